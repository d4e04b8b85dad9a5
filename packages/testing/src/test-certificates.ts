import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A throw-away PKI for TLS tests: one CA, a server certificate and a client certificate. */
export interface TestCertificates {
  /** PEM certificate of the CA that signed both leaf certificates. */
  readonly caPem: string;
  /** PEM server certificate: CN `localhost`, SAN `DNS:localhost` and `IP:127.0.0.1`, serverAuth. */
  readonly serverCertPem: string;
  /** PEM private key of the server certificate (PKCS#8). */
  readonly serverKeyPem: string;
  /** PEM client certificate: CN {@link TestCertificateOptions.clientCommonName}, clientAuth. */
  readonly clientCertPem: string;
  /** PEM private key of the client certificate (PKCS#8). */
  readonly clientKeyPem: string;
  /** Folder holding the files; removed by `cleanup`. */
  readonly dir: string;
  /** Removes `dir`. Idempotent. */
  cleanup(): Promise<void>;
}

/** Options of {@link createTestCertificates}; every field is optional. */
export interface TestCertificateOptions {
  /** Subject CN of the client certificate; default "opal-test-client". */
  readonly clientCommonName?: string;
  /** Validity in days; default 2. */
  readonly days?: number;
}

/**
 * Generates a CA, a server certificate and a client certificate with the `openssl` CLI (OpenSSL 3,
 * ECDSA P-256 keys) in a fresh temporary folder. Rejects when `openssl` is missing or fails; the
 * caller owns the folder and removes it with `cleanup()`.
 */
export async function createTestCertificates(
  options: TestCertificateOptions = {},
): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), "opal-certs-"));
  const days = String(options.days ?? 2);
  const file = (name: string) => join(dir, name);
  const openssl = (args: readonly string[]) => run("openssl", args, { cwd: dir, timeout: 30_000 });
  const newKey = (name: string) =>
    openssl([
      "genpkey",
      "-algorithm",
      "EC",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-out",
      file(name),
    ]);
  const issue = async (name: string, subject: string, extensions: string) => {
    await newKey(`${name}.key`);
    await openssl([
      "req",
      "-new",
      "-key",
      file(`${name}.key`),
      "-subj",
      subject,
      "-out",
      file(`${name}.csr`),
    ]);
    await writeFile(file(`${name}.ext`), extensions);
    await openssl([
      "x509",
      "-req",
      "-in",
      file(`${name}.csr`),
      "-CA",
      file("ca.pem"),
      "-CAkey",
      file("ca.key"),
      "-set_serial",
      `0x${randomBytes(8).toString("hex")}`,
      "-days",
      days,
      "-sha256",
      "-extfile",
      file(`${name}.ext`),
      "-out",
      file(`${name}.pem`),
    ]);
  };
  try {
    await newKey("ca.key");
    await openssl([
      "req",
      "-x509",
      "-new",
      "-key",
      file("ca.key"),
      "-subj",
      "/CN=OPAL Test CA",
      "-days",
      days,
      "-sha256",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
      "-out",
      file("ca.pem"),
    ]);
    await issue(
      "server",
      "/CN=localhost",
      [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "",
      ].join("\n"),
    );
    await issue(
      "client",
      `/CN=${options.clientCommonName ?? "opal-test-client"}`,
      [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=clientAuth",
        "",
      ].join("\n"),
    );
    const read = (name: string) => readFile(file(name), "utf8");
    const [caPem, serverCertPem, serverKeyPem, clientCertPem, clientKeyPem] = await Promise.all(
      ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"].map(read),
    );
    return {
      caPem: caPem!,
      serverCertPem: serverCertPem!,
      serverKeyPem: serverKeyPem!,
      clientCertPem: clientCertPem!,
      clientKeyPem: clientKeyPem!,
      dir,
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
