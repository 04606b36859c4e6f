# bulwark-audit: signs Merkle checkpoints with its transit key and reads that
# key's public half. It cannot create, rotate, export or delete the key
# (BULWARK_AUDIT_CREATE_KEY=false; setup.sh creates it), and it verifies
# signatures locally with the public key, so transit verify is not granted.
path "transit/keys/bulwark-audit-checkpoints" {
  capabilities = ["read"]
}
path "transit/sign/bulwark-audit-checkpoints" {
  capabilities = ["update"]
}
