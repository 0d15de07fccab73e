#!/bin/sh
# azd postdeploy: the code is live. Register the Dataverse webhook with a function key of its own
# (`d365 setup`, idempotent), check the Campaign side (`acs check`, when this version has it) and print
# where the sync health is read.
set -eu
cd "$(dirname "$0")/../.."
. infra/hooks/common.sh

load_azd_environment
require_python
require_values AZURE_RESOURCE_GROUP KEY_VAULT_NAME FUNCTION_APP_NAME WEBHOOK_URL STATUS_URL
load_app_settings

note "Registering the Dataverse webhook ($WEBHOOK_URL)"
key=$(retry az functionapp function keys set --resource-group "$AZURE_RESOURCE_GROUP" --name "$FUNCTION_APP_NAME" \
  --function-name webhook_d365 --key-name dataverse --query value --output tsv) \
  || fail "cannot create the function key of webhook_d365 (is the code deployed? azd deploy)"
"$PYTHON" -m shared.cli d365 setup --webhook-url "$WEBHOOK_URL" --function-key="$key" || status=$?
case "${status:-0}" in
  0) ;;
  1) note "d365 setup finished with warnings (above)" ;;
  *) fail "d365 setup failed (above); fix it and run 'azd deploy' again (it is idempotent)" ;;
esac

status=0
if "$PYTHON" -m shared.cli acs check --help >/dev/null 2>&1; then
  note "Checking Campaign: acs check"
  "$PYTHON" -m shared.cli acs check || status=$?
  case "${status:-0}" in
    0) ;;
    1) note "acs check finished with warnings (above)" ;;
    *) fail "acs check failed (above)" ;;
  esac
else
  note "Note: this version has no 'acs check' command; Campaign was not checked (run validate-config)."
fi

note ""
note "Deployed. Sync health (JSON): $STATUS_URL"
note "  curl -H \"x-functions-key: \$(az functionapp keys list -g $AZURE_RESOURCE_GROUP -n $FUNCTION_APP_NAME --query masterKey -o tsv)\" $STATUS_URL"
if [ "${FLOWS_ENABLED:-false}" != true ]; then
  note "The flows are off. Switch them on when the checks above pass: azd env set FLOWS_ENABLED true && azd provision"
fi
