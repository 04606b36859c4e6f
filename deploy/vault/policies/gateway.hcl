# bulwark-gateway: reads the key of the audit payload HMACs, nothing else.
# It cannot write it (BULWARK_GATEWAY_HMAC_CREATE=false; setup.sh creates it).
path "secret/data/bulwark/audit/payload-hmac" {
  capabilities = ["read"]
}
