# bulwark-router: reads provider API keys, nothing else. {{env}} is each key
# environment (identity's BULWARK_IDENTITY_ENVIRONMENTS); setup.sh writes one
# copy of these two rules per environment. The metadata read lets the router
# notice a rotated key (it compares the current version before re-reading).
path "secret/data/bulwark/{{env}}/providers/*" {
  capabilities = ["read"]
}
path "secret/metadata/bulwark/{{env}}/providers/*" {
  capabilities = ["read"]
}
