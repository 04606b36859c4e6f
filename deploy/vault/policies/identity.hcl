# bulwark-identity: reads the pepper that keys the HMAC of API keys.
# It cannot write it (BULWARK_IDENTITY_PEPPER_CREATE=false; setup.sh creates it).
path "secret/data/bulwark/identity/pepper" {
  capabilities = ["read"]
}
