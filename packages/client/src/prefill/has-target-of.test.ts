import { createMockDevice } from "@opal/mock";
import { afterAll, expect, it } from "vitest";
import { hasTargetOf } from "./has-target-of";

const mock = createMockDevice({ models: [] });
afterAll(() => mock.close());

it("is true only for a driver whose targetOf is a function", () => {
  expect(hasTargetOf(mock)).toBe(false);
  const notAFunction = { ...mock, targetOf: "a:1" };
  expect(hasTargetOf(notAFunction)).toBe(false);
  const pool = { ...mock, targetOf: (handle: string) => `${handle}@a:1` };
  expect(hasTargetOf(pool)).toBe(true);
  if (hasTargetOf(pool)) expect(pool.targetOf("h")).toBe("h@a:1");
});
