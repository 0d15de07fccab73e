# What the azd hooks share (sourced, POSIX sh). The hooks run from the repository root with the azd
# environment's values (`azd env get-values`, Bicep outputs included) in their environment; run by hand
# (`sh infra/hooks/postdeploy.sh`), they load those values from azd themselves.

PYTHON="${ACSD365_PYTHON:-.venv/bin/python}"
# Role assignments take minutes to apply: a 403 right after provisioning is retried.
RETRY_TRIES="${ACSD365_RETRY_TRIES:-10}"
RETRY_SECONDS="${ACSD365_RETRY_SECONDS:-20}"

# Key Vault secret names (the same as `var secretNames` in infra/main.bicep; tests/infra checks).
D365_SECRET_NAME=d365-client-secret
ACS_SECRET_NAME=acs-client-secret
WEBHOOK_SECRET_NAME=webhook-shared-secret

fail() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

note() {
  printf '%s\n' "$*" >&2
}

load_azd_environment() {
  [ -n "${AZURE_ENV_NAME:-}" ] && return 0
  command -v azd >/dev/null 2>&1 || fail "no azd environment: run this hook through azd (azd up), or install azd"
  values=$(azd env get-values) || fail "azd env get-values failed: select an environment (azd env select)"
  # KEY="value" lines, shell syntax by design.
  eval "$values"
  export AZURE_ENV_NAME
}

require_values() {
  missing=""
  for name in "$@"; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || missing="$missing $name"
  done
  [ -z "$missing" ] || fail "missing azd environment value(s):$missing. Set each with: azd env set NAME VALUE (docs/deploy.md)"
}

require_python() {
  [ -x "$PYTHON" ] || fail "no Python environment at $PYTHON: run 'make setup' first (Python 3.11+)"
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' \
    || fail "$PYTHON is older than Python 3.11"
}

# `retry CMD ARGS...`: run an az command again while it is refused (403) or throttled, then give up.
retry() {
  try=1
  while :; do
    if output=$("$@" 2>"${TMPDIR:-/tmp}/acsd365-hook-err.$$"); then
      rm -f "${TMPDIR:-/tmp}/acsd365-hook-err.$$"
      [ -z "$output" ] || printf '%s\n' "$output"
      return 0
    fi
    error=$(cat "${TMPDIR:-/tmp}/acsd365-hook-err.$$")
    rm -f "${TMPDIR:-/tmp}/acsd365-hook-err.$$"
    case "$error" in
      *Forbidden* | *AuthorizationFailed* | *"does not have"* | *TooManyRequests* | *429*) ;;
      *) printf '%s\n' "$error" >&2; return 1 ;;
    esac
    [ "$try" -lt "$RETRY_TRIES" ] || { printf '%s\n' "$error" >&2; return 1; }
    note "  refused (role assignments still applying?); retrying in ${RETRY_SECONDS}s ($try/$RETRY_TRIES)"
    sleep "$RETRY_SECONDS"
    try=$((try + 1))
  done
}

# The app's settings for the operator CLI on this machine: the function app's (not the host's, not the
# Key Vault references), the secrets from Key Vault, and the operator's own `az login` for storage (and
# for Dataverse when the app signs in with its managed identity, which exists only in Azure).
load_app_settings() {
  settings=$(retry az functionapp config appsettings list --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$FUNCTION_APP_NAME" --output json) || fail "cannot read the app settings of $FUNCTION_APP_NAME"
  exports=$(printf '%s' "$settings" | "$PYTHON" -c '
import json, shlex, sys
for setting in json.load(sys.stdin):
    name, value = setting["name"], setting["value"] or ""
    if name.isupper() and not name.startswith(("APPLICATIONINSIGHTS_", "AZURE_")) and not value.startswith("@Microsoft.KeyVault("):
        print("export %s=%s" % (name, shlex.quote(value)))
') || fail "cannot read the app settings of $FUNCTION_APP_NAME"
  eval "$exports"
  ACS_CLIENT_SECRET=$(secret_value "$ACS_SECRET_NAME") || fail "cannot read $ACS_SECRET_NAME from $KEY_VAULT_NAME"
  WEBHOOK_SHARED_SECRET=$(secret_value "$WEBHOOK_SECRET_NAME") || fail "cannot read $WEBHOOK_SECRET_NAME from $KEY_VAULT_NAME"
  export ACS_CLIENT_SECRET WEBHOOK_SHARED_SECRET
  if [ "${D365_AUTH:-}" = client_secret ]; then
    D365_CLIENT_SECRET=$(secret_value "$D365_SECRET_NAME") || fail "cannot read $D365_SECRET_NAME from $KEY_VAULT_NAME"
    export D365_CLIENT_SECRET
  else
    # No Dataverse secret exists: the operator commands sign in to Dataverse as you (az login).
    export D365_AUTH=azure_cli
  fi
}

secret_value() {
  retry az keyvault secret show --vault-name "$KEY_VAULT_NAME" --name "$1" --query value --output tsv
}
