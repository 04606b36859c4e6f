#!/usr/bin/env bash
# Configures a Vault cluster for Bulwark, idempotently (run it again after
# changing a policy or adding a key environment):
#   - KV v2 at secret/ and transit at transit/;
#   - the audit checkpoint signing key (transit, ed25519, not exportable), the
#     API-key pepper and the audit payload-HMAC key (random, created once, never
#     overwritten);
#   - one least-privilege policy per service (deploy/vault/policies/*.hcl);
#   - login roles bound to those policies: Kubernetes auth (role bulwark-<svc>
#     bound to the service's ServiceAccount in the Bulwark namespace) and
#     AppRole (role bulwark-<svc>), which the services use today;
#   - with --kubernetes-secrets, the AppRole credentials as the Secrets the
#     Deployments read (bulwark-<svc>-vault), applied with kubectl.
#
# Needs: VAULT_ADDR and VAULT_TOKEN (a token allowed to configure Vault, used
# only here), the vault CLI (or VAULT_BIN), and kubectl for --kubernetes-secrets.
# Settings (environment):
#   BULWARK_NAMESPACE          namespace of the Bulwark pods        (bulwark)
#   BULWARK_KEY_ENVIRONMENTS   key environments with provider keys  (dev staging prod)
#   KUBERNETES_HOST            API server as Vault reaches it       (https://kubernetes.default.svc)
#   KUBERNETES_CA_CERT         its CA file, when Vault runs outside the cluster
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
vault=${VAULT_BIN:-vault}
namespace=${BULWARK_NAMESPACE:-bulwark}
environments=${BULWARK_KEY_ENVIRONMENTS:-dev staging prod}
kubernetes_host=${KUBERNETES_HOST:-https://kubernetes.default.svc}
k8s_secrets=false
for arg in "$@"; do
  case "$arg" in
    --kubernetes-secrets) k8s_secrets=true ;;
    *) echo "usage: $0 [--kubernetes-secrets]" >&2; exit 2 ;;
  esac
done
: "${VAULT_ADDR:?set VAULT_ADDR}"
: "${VAULT_TOKEN:?set VAULT_TOKEN}"

# The services that log in to Vault (redaction and ratelimit never do).
services="gateway identity router audit"
transit_key=bulwark-audit-checkpoints

log() { echo "vault-setup: $*"; }

# mounted secrets|auth PATH: whether something is mounted at PATH/.
mounted() {
  local list
  list=$("$vault" "$1" list -format=json)
  [[ $list == *"\"$2/\""* ]]
}

if ! mounted secrets secret; then
  log "enabling KV v2 at secret/"
  "$vault" secrets enable -path=secret kv-v2 >/dev/null
fi
if ! mounted secrets transit; then
  log "enabling transit at transit/"
  "$vault" secrets enable transit >/dev/null
fi

if ! "$vault" read -format=json "transit/keys/$transit_key" >/dev/null 2>&1; then
  log "creating transit key $transit_key (ed25519, not exportable)"
  "$vault" write -f "transit/keys/$transit_key" type=ed25519 exportable=false >/dev/null
fi

# random_kv PATH FIELD: writes 32 random bytes (base64) once; -cas=0 refuses to
# overwrite, so a second run or a concurrent one never replaces a live key.
random_kv() {
  if "$vault" kv get -mount=secret "$1" >/dev/null 2>&1; then
    return
  fi
  log "creating secret/$1"
  head -c 32 /dev/urandom | base64 | tr -d '\n' | "$vault" kv put -mount=secret -cas=0 "$1" "$2=-" >/dev/null
}
random_kv bulwark/identity/pepper pepper
random_kv bulwark/audit/payload-hmac key

for svc in $services; do
  if [ "$svc" = router ]; then
    policy=""
    for env in $environments; do
      case "$env" in *[!a-z0-9-]*|"") echo "bad environment name: $env" >&2; exit 2 ;; esac
      policy+=$(sed "s/{{env}}/$env/g" "$here/policies/router.hcl")$'\n'
    done
    printf '%s' "$policy" | "$vault" policy write "bulwark-$svc" - >/dev/null
  else
    "$vault" policy write "bulwark-$svc" "$here/policies/$svc.hcl" >/dev/null
  fi
  log "policy bulwark-$svc written"
done

if ! mounted auth kubernetes; then
  log "enabling the Kubernetes auth method"
  "$vault" auth enable kubernetes >/dev/null
fi
# In-cluster Vault finds the API server's CA and its reviewer token on its own
# pod; a Vault outside the cluster needs the CA file (KUBERNETES_CA_CERT).
if [ -n "${KUBERNETES_CA_CERT:-}" ]; then
  "$vault" write auth/kubernetes/config kubernetes_host="$kubernetes_host" \
    kubernetes_ca_cert=@"$KUBERNETES_CA_CERT" >/dev/null
else
  "$vault" write auth/kubernetes/config kubernetes_host="$kubernetes_host" >/dev/null
fi
if ! mounted auth approle; then
  log "enabling the AppRole auth method"
  "$vault" auth enable approle >/dev/null
fi
for svc in $services; do
  "$vault" write "auth/kubernetes/role/bulwark-$svc" \
    bound_service_account_names="$svc" bound_service_account_namespaces="$namespace" \
    audience=vault token_policies="bulwark-$svc" token_ttl=1h token_max_ttl=4h >/dev/null
  "$vault" write "auth/approle/role/bulwark-$svc" \
    token_policies="bulwark-$svc" token_ttl=1h token_max_ttl=4h \
    secret_id_num_uses=0 secret_id_ttl=0 >/dev/null
  log "roles bulwark-$svc (kubernetes: $namespace/$svc; approle)"
done

if $k8s_secrets; then
  for svc in $services; do
    role_id=$("$vault" read -field=role_id "auth/approle/role/bulwark-$svc/role-id")
    secret_id=$("$vault" write -f -field=secret_id "auth/approle/role/bulwark-$svc/secret-id")
    # Values go through a file descriptor, never the command line.
    kubectl -n "$namespace" create secret generic "bulwark-$svc-vault" \
      --from-env-file=<(printf 'role_id=%s\nsecret_id=%s\n' "$role_id" "$secret_id") \
      --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    log "secret $namespace/bulwark-$svc-vault applied (a new secret id; older ones stay valid until revoked)"
  done
fi
log "done"
