/**
 * What a reflection request resolves with, or `none` when the server answered it with an
 * `ErrorResponse` (the `OpalError` whose `cause` holds its `errorCode`); other failures reject.
 */
export async function unlessReflectionError<T>(request: Promise<T>, none: T): Promise<T> {
  try {
    return await request;
  } catch (error) {
    const cause = (error as { cause?: { errorCode?: unknown } }).cause;
    if (typeof cause?.errorCode === "number") return none;
    throw error;
  }
}
