"""Calls a running redaction service through the generated Python gRPC client.

The Go test TestGeneratedClients in tools/devstack starts the service and sets
BULWARK_REDACTION_ADDR (host:port). Run with Debian's /usr/bin/python3, which
has python3-grpcio and python3-protobuf.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import grpc  # noqa: E402

from bulwark.redaction.v1 import redaction_pb2, redaction_pb2_grpc  # noqa: E402


class RedactionClientTest(unittest.TestCase):
    def test_inspect_finds_an_email_address(self):
        addr = os.environ.get("BULWARK_REDACTION_ADDR")
        self.assertTrue(addr, "BULWARK_REDACTION_ADDR must point at a running redaction service")
        text = "please write to jane.doe@example.com today"
        with grpc.insecure_channel(addr) as channel:
            stub = redaction_pb2_grpc.RedactionServiceStub(channel)
            res = stub.Inspect(redaction_pb2.InspectRequest(text=text), timeout=10)
        emails = [f for f in res.findings if f.entity_type == "EMAIL_ADDRESS"]
        self.assertEqual(len(emails), 1, res)
        self.assertEqual(text.encode()[emails[0].start:emails[0].end].decode(), "jane.doe@example.com")
        self.assertIn("PII.CONTACT", res.data_classes)


if __name__ == "__main__":
    unittest.main()
