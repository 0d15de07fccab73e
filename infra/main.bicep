// The Campaign Standard ⇄ Dynamics 365 integration on Azure Functions (Flex Consumption, Linux, Python 3.11).
// No keys anywhere: the app reaches Storage, Key Vault and Application Insights with one user-assigned
// managed identity; the Dynamics and Campaign secrets live in Key Vault and reach the app as Key Vault
// references. Deploy into an existing resource group (docs/deploy.md):
//   az deployment group create -g <rg> -f infra/main.bicep -p @infra/main.parameters.json
targetScope = 'resourceGroup'

// --- Where and what ------------------------------------------------------------------------------

@description('Short name of this deployment (e.g. prod, test); part of every generated resource name.')
@minLength(1)
@maxLength(16)
param environmentName string

@description('Azure region of every resource; must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@description('Tags added to every resource.')
param tags object = {}

@description('Function app name (it is part of the webhook URL); generated when empty.')
param functionAppName string = ''

@description('Object id of the operator (user or group) who puts the secrets in Key Vault and runs the runbook commands; no operator access when empty.')
param operatorPrincipalId string = ''

@description('Kind of principal operatorPrincipalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

// --- Dynamics 365 / Dataverse --------------------------------------------------------------------

@description('Dataverse organisation URL, e.g. https://contoso.crm.dynamics.com')
param d365OrgUrl string

@description('Entra tenant of the Dynamics application user; this deployment\'s tenant by default.')
param d365TenantId string = tenant().tenantId

@description('Client id of the Entra app registration that is the Dataverse application user.')
param d365ClientId string

@description('How the app signs in to Dataverse: managed_identity_federation (no secret: the app registration trusts this deployment\'s managed identity, see the FEDERATED_CREDENTIAL_* outputs and docs/deploy.md) or client_secret (Key Vault secret d365-client-secret).')
@allowed([
  'managed_identity_federation'
  'client_secret'
])
param d365Auth string = 'managed_identity_federation'

@description('Requests per second to Dataverse for the whole deployment, shared by its running instances through Table Storage (6,000 per 5 minutes per user = 20/s; docs/scale.md).')
@minValue(1)
@maxValue(20)
param d365TotalRequestsPerSecond int = 15

@description('Requests per second to Dataverse of one instance: only used if D365_TOTAL_REQUESTS_PER_SECOND is removed.')
@minValue(1)
@maxValue(20)
param d365RequestsPerSecond int = 15

@description('Concurrent Dataverse requests per running instance (Dataverse allows 52 per user).')
@minValue(1)
@maxValue(52)
param d365MaxConcurrency int = 8

// --- Adobe Campaign Standard and Adobe I/O Events ----------------------------------------------------

@description('Campaign tenant id, e.g. contoso or contoso-mkt-stage.')
param acsTenant string

@description('Client id (API key) of the Adobe Developer Console OAuth server-to-server credential.')
param acsClientId string

@description('OAuth scopes of that credential, comma-separated, as the Developer Console lists them (adobeio_api reads the I/O Events journal).')
param acsScopes string = 'openid,AdobeID,campaign_sdk,additional_info.projectedProductContext,adobeio_api'

@description('Journal URL of the Adobe I/O Events registration for Campaign email events.')
param acsEventsJournalUrl string

@description('Adobe IMS organisation id, e.g. ABC123@AdobeOrg.')
param acsImsOrgId string

@description('Requests per second to Campaign for the whole deployment, from the Campaign licence: the running instances share it through Table Storage (docs/scale.md).')
@minValue(1)
param acsTotalRequestsPerSecond int = 20

@description('Requests per second to Campaign of one instance: only used if ACS_TOTAL_REQUESTS_PER_SECOND is removed.')
@minValue(1)
param acsRequestsPerSecond int = 20

@description('Concurrent Campaign requests per running instance.')
@minValue(1)
@maxValue(64)
param acsMaxConcurrency int = 4

// --- Schedules (NCRONTAB with seconds, UTC) and switches ---------------------------------------------

@description('Dynamics → Campaign sweep (change tracking). Staggered from the other timers.')
param contactsSyncSchedule string = '0 */5 * * * *'

@description('Campaign email events → Dynamics timeline.')
param eventsPushSchedule string = '0 1-59/5 * * * *'

@description('Campaign opt-out changes → Dynamics.')
param optoutSyncSchedule string = '0 2-59/5 * * * *'

@description('Drift check with repair (verify_sync), when enabled: daily at 02:30 UTC.')
param verifySchedule string = '0 30 2 * * *'

param contactsSyncEnabled bool = true
param eventsPushEnabled bool = true
param optoutSyncEnabled bool = true
param webhookEnabled bool = true

@description('Run verify_sync: compare Dynamics and Campaign record by record and repair drift (off by default).')
param verifySyncEnabled bool = false

@description('Seconds a timer run works before it stops cleanly; below host.json functionTimeout (10 minutes).')
@minValue(30)
@maxValue(570)
param functionTimeBudgetSeconds int = 480

@description('A replay of a table with at least this many rows is refused (Adobe refused 2,000,000).')
@minValue(1)
param replayMaxRows int = 2000000

@description('Days a run report is kept (dead letters are kept until an operator retries them).')
@minValue(1)
param runReportRetentionDays int = 90

@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

// --- Monitoring: alert rules, their receivers, audit logs (docs/monitoring.md) ---------------------

@description('Email addresses the alerts notify; with no email and no webhook, no action group is created (alerts still show in Azure Monitor → Alerts).')
param alertEmailAddresses array = []

@secure()
@description('HTTPS endpoint the alerts are POSTed to (common alert schema); none when empty.')
param alertWebhookUrl string = ''

@description('Resource id of an existing action group the alerts notify as well; none when empty.')
param alertActionGroupId string = ''

@description('Deploy the alert rules enabled (false: deployed, but disabled).')
param alertsEnabled bool = true

@description('Alert rules to deploy disabled: flow-not-succeeding, dead-letters, lag, webhook-errors, credentials-rejected.')
param disabledAlerts array = []

@description('Alert when a timer flow has this many runs in a row that failed or were partial.')
@minValue(1)
param alertFailedRuns int = 3

@description('Alert when more records than this were dead-lettered in an hour (per flow and mapping).')
@minValue(0)
param alertDeadLetters int = 0

@description('Alert when a mapping lags more than this many seconds behind Dynamics.')
@minValue(60)
param alertLagSeconds int = 1800

@description('Alert when the webhook answers more 4xx (or 5xx) than this in 15 minutes.')
@minValue(0)
param alertWebhookErrors int = 10

@description('Alert when credentials are rejected more than this many times in 15 minutes.')
@minValue(0)
param alertCredentialFailures int = 2

@description('Storage logs sent to Log Analytics (blob and table services); StorageRead logs every ledger read.')
param storageLogCategories array = [
  'StorageWrite'
  'StorageDelete'
]

// --- Scale ---------------------------------------------------------------------------------------------

@description('Instances per function group: the webhook group scales to this. The instances share one request budget per API; while Table Storage cannot be reached, each takes total ÷ this.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 4

@description('Concurrent webhook requests per instance.')
@minValue(1)
@maxValue(100)
param httpPerInstanceConcurrency int = 4

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// --- Names ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var appName = empty(functionAppName) ? 'func-acsd365-${resourceToken}' : functionAppName
var keyVaultName = 'kv-acsd365-${take(resourceToken, 10)}'
var deploymentContainerName = 'app-package'
var stateContainerName = 'acsd365-state'
// Names of the secrets the azd postprovision hook (or the operator) puts in Key Vault (docs/deploy.md,
// infra/hooks/postprovision.sh); the app reads them as references.
var secretNames = {
  d365ClientSecret: 'd365-client-secret'
  acsClientSecret: 'acs-client-secret'
  webhookSharedSecret: 'webhook-shared-secret'
}
var allTags = union(tags, {
  'acsd365-environment': environmentName
})

// --- Resources -------------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-acsd365-${resourceToken}'
  location: location
  tags: allTags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: allTags
    logAnalyticsName: 'log-acsd365-${resourceToken}'
    applicationInsightsName: 'appi-acsd365-${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: allTags
    name: 'stacsd365${take(resourceToken, 13)}'
    deploymentContainerName: deploymentContainerName
    stateContainerName: stateContainerName
    runReportRetentionDays: runReportRetentionDays
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: allTags
    name: keyVaultName
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.properties.principalId
    appContainerNames: storage.outputs.appContainerNames
    deploymentContainerName: storage.outputs.deploymentContainerName
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

// Every app setting, in one place: tests/infra/test_bicep_settings.py checks these names against the
// settings model (shared/settings.py) and the %NAME% bindings of the functions.
var appSettings = {
  // Functions host storage through the identity (no AzureWebJobsStorage connection string, no keys).
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
  // Application Insights accepts Entra-authenticated telemetry only (local auth is disabled).
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.properties.clientId}'
  // host.json telemetryMode OpenTelemetry: the app exports its own telemetry (shared.telemetry), the
  // worker must not duplicate it.
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  // DefaultAzureCredential (the app's state store) picks the user-assigned identity by this client id.
  AZURE_CLIENT_ID: identity.properties.clientId

  D365_ORG_URL: d365OrgUrl
  D365_TENANT_ID: d365TenantId
  D365_CLIENT_ID: d365ClientId
  D365_AUTH: d365Auth
  // With managed_identity_federation no Dataverse secret exists: the setting is empty, no reference to resolve.
  D365_CLIENT_SECRET: d365Auth == 'client_secret' ? '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${secretNames.d365ClientSecret})' : ''
  D365_MANAGED_IDENTITY_CLIENT_ID: identity.properties.clientId
  D365_REQUESTS_PER_SECOND: string(d365RequestsPerSecond)
  D365_TOTAL_REQUESTS_PER_SECOND: string(d365TotalRequestsPerSecond)
  D365_MAX_CONCURRENCY: string(d365MaxConcurrency)

  ACS_TENANT: acsTenant
  ACS_CLIENT_ID: acsClientId
  ACS_CLIENT_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${secretNames.acsClientSecret})'
  ACS_SCOPES: acsScopes
  ACS_EVENTS_JOURNAL_URL: acsEventsJournalUrl
  ACS_IMS_ORG_ID: acsImsOrgId
  ACS_REQUESTS_PER_SECOND: string(acsRequestsPerSecond)
  ACS_TOTAL_REQUESTS_PER_SECOND: string(acsTotalRequestsPerSecond)
  MAXIMUM_INSTANCE_COUNT: string(maximumInstanceCount)
  ACS_MAX_CONCURRENCY: string(acsMaxConcurrency)

  // Checkpoints, ledger, dead letters and run reports: the same account, through the same identity.
  STATE_STORAGE_ACCOUNT_NAME: storage.outputs.name
  STATE_CONTAINER: stateContainerName

  CONTACTS_SYNC_SCHEDULE: contactsSyncSchedule
  EVENTS_PUSH_SCHEDULE: eventsPushSchedule
  OPTOUT_SYNC_SCHEDULE: optoutSyncSchedule
  VERIFY_SCHEDULE: verifySchedule
  CONTACTS_SYNC_ENABLED: string(contactsSyncEnabled)
  EVENTS_PUSH_ENABLED: string(eventsPushEnabled)
  OPTOUT_SYNC_ENABLED: string(optoutSyncEnabled)
  WEBHOOK_ENABLED: string(webhookEnabled)
  VERIFY_SYNC_ENABLED: string(verifySyncEnabled)
  WEBHOOK_SHARED_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${secretNames.webhookSharedSecret})'
  FUNCTION_TIME_BUDGET_SECONDS: string(functionTimeBudgetSeconds)
  REPLAY_MAX_ROWS: string(replayMaxRows)
  LOG_LEVEL: logLevel
}

module functionApp 'modules/function-app.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    tags: allTags
    name: appName
    planName: 'plan-acsd365-${resourceToken}'
    identityId: identity.id
    deploymentStorageUrl: '${storage.outputs.blobEndpoint}${deploymentContainerName}'
    appSettings: appSettings
    maximumInstanceCount: maximumInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    instanceMemoryMB: instanceMemoryMB
  }
  // The host reads storage and Key Vault at its first start: the roles must exist by then.
  dependsOn: [
    rbac
  ]
}

// The dashboard, the alert rules and the audit logs (docs/monitoring.md).
module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  params: {
    location: location
    tags: allTags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    displayName: 'ACS ⇄ Dynamics 365 integration (${environmentName})'
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    tags: allTags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    namePrefix: 'acsd365-${resourceToken}'
    emailReceivers: alertEmailAddresses
    webhookReceiverUrl: alertWebhookUrl
    existingActionGroupId: alertActionGroupId
    alertsEnabled: alertsEnabled
    disabledAlerts: disabledAlerts
    failedRunsThreshold: alertFailedRuns
    deadLettersThreshold: alertDeadLetters
    lagThresholdSeconds: alertLagSeconds
    webhookErrorsThreshold: alertWebhookErrors
    credentialFailuresThreshold: alertCredentialFailures
  }
}

module diagnostics 'modules/diagnostics.bicep' = {
  name: 'diagnostics'
  params: {
    workspaceId: monitoring.outputs.workspaceId
    keyVaultName: keyVault.outputs.name
    storageAccountName: storage.outputs.name
    storageLogCategories: storageLogCategories
  }
}

// Outputs in UPPER_SNAKE: azd stores them in the environment (.azure/<env>/.env) for the hooks.
output FUNCTION_APP_NAME string = functionApp.outputs.name
@description('POST target of the Dataverse webhook; Dataverse adds the function key (d365 setup).')
output WEBHOOK_URL string = 'https://${functionApp.outputs.defaultHostName}/api/webhook_d365'
@description('The sync health endpoint (admin key).')
output STATUS_URL string = 'https://${functionApp.outputs.defaultHostName}/api/status'
output KEY_VAULT_NAME string = keyVault.outputs.name
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output D365_AUTH string = d365Auth
// The federated credential the admin adds to the Dataverse app registration (docs/deploy.md): it trusts
// tokens Entra issues to this deployment's user-assigned identity for Entra's token exchange.
output FEDERATED_CREDENTIAL_ISSUER string = '${environment().authentication.loginEndpoint}${d365TenantId}/v2.0'
output FEDERATED_CREDENTIAL_SUBJECT string = identity.properties.principalId
output FEDERATED_CREDENTIAL_AUDIENCE string = 'api://AzureADTokenExchange'
