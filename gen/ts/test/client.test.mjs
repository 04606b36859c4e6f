// Calls a running redaction service through the generated client over both the
// Connect protocol and gRPC. The Go test TestGeneratedClients in tools/devstack
// starts the service and sets BULWARK_REDACTION_URL.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { redaction } from "../dist/index.js";

const baseUrl = process.env.BULWARK_REDACTION_URL;

test("Inspect finds an email address over Connect and gRPC", async () => {
  assert.ok(baseUrl, "BULWARK_REDACTION_URL must point at a running redaction service");
  const transports = {
    connect: createConnectTransport({ baseUrl, httpVersion: "1.1" }),
    grpc: createGrpcTransport({ baseUrl }),
  };
  for (const [name, transport] of Object.entries(transports)) {
    const client = createClient(redaction.RedactionService, transport);
    const text = "please write to jane.doe@example.com today";
    const res = await client.inspect({ text });
    const email = res.findings.find((f) => f.entityType === "EMAIL_ADDRESS");
    assert.ok(email, `${name}: no EMAIL_ADDRESS finding in ${JSON.stringify(res.findings)}`);
    assert.equal(text.slice(email.start, email.end), "jane.doe@example.com", name);
    assert.ok(res.dataClasses.includes("PII.CONTACT"), `${name}: data classes ${res.dataClasses}`);
  }
});
