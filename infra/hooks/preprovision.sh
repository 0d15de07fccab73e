#!/bin/sh
# azd preprovision: stop before anything is created when a prerequisite is missing. Checks the tools
# (Azure CLI signed in, the repo's Python 3.11+ environment), the azd environment values that
# infra/main.parameters.json needs, and the sync configuration that will be deployed (the offline part
# of `validate-config`; the online part runs in postprovision, against the real systems).
set -eu
cd "$(dirname "$0")/../.."
. infra/hooks/common.sh

load_azd_environment
command -v az >/dev/null 2>&1 \
  || fail "the Azure CLI (az) is not installed: https://learn.microsoft.com/cli/azure/install-azure-cli (the hooks use it for Key Vault and the function app)"
az account show --output none 2>/dev/null || fail "the Azure CLI is not signed in: run 'az login' (azd and az keep separate logins)"
require_python
require_values D365_ORG_URL D365_CLIENT_ID ACS_TENANT ACS_CLIENT_ID ACS_EVENTS_JOURNAL_URL ACS_IMS_ORG_ID

case "${D365_AUTH:-managed_identity_federation}" in
  managed_identity_federation | client_secret) ;;
  *) fail "D365_AUTH is '$D365_AUTH': use managed_identity_federation (no secret) or client_secret" ;;
esac

note "Checking the sync configuration (sync_config.json, as deployed)"
"$PYTHON" -c '
from shared.mapping.model import load_sync_config
config = load_sync_config(inline=None, path="sync_config.json")
print("  ok: %d table mapping(s): %s" % (len(config.tables), ", ".join(t.name for t in config.tables)))
' || fail "the sync configuration is invalid (see above): fix sync_config.json before deploying"
note "Prerequisites met."
