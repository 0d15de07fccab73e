#!/bin/sh
# azd postprovision: put the secrets in Key Vault, trust the app's identity for Dataverse, prepare Dynamics.
#  1. Secrets. Each one given in this hook's environment (ACS_CLIENT_SECRET, D365_CLIENT_SECRET,
#     WEBHOOK_SHARED_SECRET) is stored; one already in the vault is kept; the webhook's shared secret is
#     generated; any other is asked for at the terminal (never echoed, never on a command line).
#  2. D365_AUTH=managed_identity_federation: the federated credential on the Dataverse app registration
#     (created when your login may, printed otherwise).
#  3. `d365 setup` against the organisation (tables, change tracking); the webhook is registered by
#     postdeploy, once the function that receives it exists.
set -eu
cd "$(dirname "$0")/../.."
. infra/hooks/common.sh

load_azd_environment
require_python
require_values AZURE_RESOURCE_GROUP KEY_VAULT_NAME FUNCTION_APP_NAME D365_CLIENT_ID

secret_exists() {
  try=1
  while :; do
    if error=$(az keyvault secret show --vault-name "$KEY_VAULT_NAME" --name "$1" --query id --output tsv 2>&1 >/dev/null); then
      return 0
    fi
    case "$error" in
      *NotFound*) return 1 ;;
      *Forbidden* | *"does not have"*) [ "$try" -lt "$RETRY_TRIES" ] || fail "cannot read Key Vault $KEY_VAULT_NAME: $error" ;;
      *) fail "cannot read Key Vault $KEY_VAULT_NAME: $error" ;;
    esac
    note "  Key Vault refused (role assignment still applying?); retrying in ${RETRY_SECONDS}s ($try/$RETRY_TRIES)"
    sleep "$RETRY_SECONDS"
    try=$((try + 1))
  done
}

put_secret() { # name value: through a private file, so the value is never an argument
  (
    umask 077
    file=$(mktemp)
    trap 'rm -f "$file"' EXIT
    printf '%s' "$2" >"$file"
    retry az keyvault secret set --vault-name "$KEY_VAULT_NAME" --name "$1" --file "$file" --encoding utf-8 --output none
  ) || fail "cannot store $1 in $KEY_VAULT_NAME"
}

# ensure_secret <Key Vault name> <variable> <generate|ask> <what it is>
ensure_secret() {
  eval "given=\${$2:-}"
  if [ -n "$given" ]; then
    put_secret "$1" "$given"
    note "  $1: stored (from $2)"
  elif secret_exists "$1"; then
    note "  $1: already in $KEY_VAULT_NAME, kept"
  elif [ "$3" = generate ]; then
    put_secret "$1" "$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')"
    note "  $1: generated"
  elif [ -t 0 ]; then
    printf '%s (%s): ' "$4" "$2" >&2
    stty -echo
    IFS= read -r answer || answer=""
    stty echo
    printf '\n' >&2
    [ -n "$answer" ] || fail "$2 is required"
    put_secret "$1" "$answer"
    note "  $1: stored"
  else
    fail "$1 is not in Key Vault $KEY_VAULT_NAME and $2 is not set: run 'azd provision' in a terminal to be asked for it, or set $2 in this hook's environment"
  fi
}

note "Secrets in Key Vault $KEY_VAULT_NAME"
ensure_secret "$ACS_SECRET_NAME" ACS_CLIENT_SECRET ask "Campaign client secret"
ensure_secret "$WEBHOOK_SECRET_NAME" WEBHOOK_SHARED_SECRET generate "webhook shared secret"
if [ "${D365_AUTH:-managed_identity_federation}" = client_secret ]; then
  ensure_secret "$D365_SECRET_NAME" D365_CLIENT_SECRET ask "Dynamics client secret"
else
  require_values FEDERATED_CREDENTIAL_ISSUER FEDERATED_CREDENTIAL_SUBJECT FEDERATED_CREDENTIAL_AUDIENCE
  note "Dataverse sign-in without a secret: app registration $D365_CLIENT_ID must trust managed identity $FEDERATED_CREDENTIAL_SUBJECT"
  trusted=$(az ad app federated-credential list --id "$D365_CLIENT_ID" \
    --query "[?subject=='$FEDERATED_CREDENTIAL_SUBJECT'] | length(@)" --output tsv 2>/dev/null || echo unknown)
  if [ "$trusted" = unknown ] || [ "$trusted" = 0 ]; then
    parameters=$(printf '{"name": "acsd365-%s", "issuer": "%s", "subject": "%s", "audiences": ["%s"], "description": "acs-d365-sync function app (%s)"}' \
      "$AZURE_ENV_NAME" "$FEDERATED_CREDENTIAL_ISSUER" "$FEDERATED_CREDENTIAL_SUBJECT" "$FEDERATED_CREDENTIAL_AUDIENCE" "$AZURE_ENV_NAME")
    if az ad app federated-credential create --id "$D365_CLIENT_ID" --parameters "$parameters" --output none; then
      note "  federated credential acsd365-$AZURE_ENV_NAME created"
    else
      note "  WARNING: could not add the federated credential (you need to own the app registration or be an"
      note "  Application Administrator). Ask an admin to add it (docs/deploy.md#secretless-dataverse):"
      note "    issuer   $FEDERATED_CREDENTIAL_ISSUER"
      note "    subject  $FEDERATED_CREDENTIAL_SUBJECT"
      note "    audience $FEDERATED_CREDENTIAL_AUDIENCE"
    fi
  else
    note "  federated credential present"
  fi
fi

note "Preparing Dynamics ($D365_ORG_URL): d365 setup"
load_app_settings
"$PYTHON" -m shared.cli d365 setup || status=$?
case "${status:-0}" in
  0) ;;
  1) note "d365 setup finished with warnings (above)" ;;
  *) fail "d365 setup failed (above); fix it and run 'azd provision' again (it is idempotent)" ;;
esac
