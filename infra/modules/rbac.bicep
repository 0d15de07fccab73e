// Role assignments, each at the narrowest scope that works (one resource), with deterministic names
// (guid of scope, principal and role) so a redeployment finds them again instead of adding duplicates.

param storageAccountName string
param keyVaultName string
param applicationInsightsName string

@description('Principal id of the function app\'s user-assigned identity.')
param appPrincipalId string

@description('Object id of the operator; no operator roles when empty.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

// Built-in role definition ids (the same in every subscription).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
var hasOperator = !empty(operatorPrincipalId)
var app = {
  principalId: appPrincipalId
  principalType: 'ServicePrincipal'
}
var operator = {
  principalId: operatorPrincipalId
  principalType: operatorPrincipalType
}

// App: Blob Data Owner is what the Functions host needs on AzureWebJobsStorage (timer locks, function
// keys, the deployment package) and covers our dead letters and run reports; Table Data Contributor for
// our checkpoints and ledger. No queue role: no queue trigger. Operator: read and repair the same state
// (runbook), without the ownership rights.
var appStorageAssignments = [
  union(app, { role: roles.storageBlobDataOwner })
  union(app, { role: roles.storageTableDataContributor })
]
var operatorStorageAssignments = [
  union(operator, { role: roles.storageBlobDataContributor })
  union(operator, { role: roles.storageTableDataContributor })
]
var storageAssignments = concat(appStorageAssignments, hasOperator ? operatorStorageAssignments : [])

// App: read secret values (Key Vault references). Operator: write them.
var appKeyVaultAssignments = [
  union(app, { role: roles.keyVaultSecretsUser })
]
var operatorKeyVaultAssignments = [
  union(operator, { role: roles.keyVaultSecretsOfficer })
]
var keyVaultAssignments = concat(appKeyVaultAssignments, hasOperator ? operatorKeyVaultAssignments : [])

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for assignment in storageAssignments: {
    name: guid(storageAccount.id, assignment.principalId, assignment.role)
    scope: storageAccount
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', assignment.role)
      principalId: assignment.principalId
      principalType: assignment.principalType
    }
  }
]

resource keyVaultRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for assignment in keyVaultAssignments: {
    name: guid(vault.id, assignment.principalId, assignment.role)
    scope: vault
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', assignment.role)
      principalId: assignment.principalId
      principalType: assignment.principalType
    }
  }
]

// Entra-authenticated telemetry ingestion (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}
