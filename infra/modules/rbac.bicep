// Role assignments, each at the narrowest scope that works (one resource), with deterministic names
// (guid of scope, principal and role) so a redeployment finds them again instead of adding duplicates.

param storageAccountName string
param keyVaultName string
param applicationInsightsName string

@description('Principal id of the function app\'s user-assigned identity.')
param appPrincipalId string

@description('Blob containers the app writes: the Functions host\'s (timer locks, host lease, function keys) and the integration\'s state.')
param appContainerNames array

@description('Blob container the Flex Consumption plan deploys the app package from.')
param deploymentContainerName string

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

// Operator: read and repair the app's state (runbook) on the account. The app's storage roles are
// narrower, one scope per need (below).
var operatorStorageAssignments = [
  union(operator, { role: roles.storageBlobDataContributor })
  union(operator, { role: roles.storageTableDataContributor })
]
var storageAssignments = hasOperator ? operatorStorageAssignments : []

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

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storageAccount
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: storageAccount
  name: 'default'
}

resource appContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for containerName in appContainerNames: {
    parent: blobService
    name: containerName
  }
]

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deploymentContainerName
}

// App, blobs: Blob Data Contributor on each container it writes, nothing on the account. (Blob Data
// Owner adds only ACL and ownership rights of hierarchical namespaces, which this account has not.)
resource appContainerRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (containerName, i) in appContainerNames: {
    name: guid(appContainers[i].id, appPrincipalId, roles.storageBlobDataContributor)
    scope: appContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

// App, deployment package: the Flex Consumption publish endpoint (azd deploy, func publish) uploads the
// package into this container with the app's identity (functionAppConfig.deployment.storage) and the
// platform reads it from there, so read alone fails the upload (BlobUploadFailedException, 403).
// Contributor on this one container, no other.
resource deploymentRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentContainer.id, appPrincipalId, roles.storageBlobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// App, tables: the host's diagnostic-events tables and our checkpoints and ledger are created on demand,
// so Table Data Contributor on the table service (no blob or queue data through it). No queue role: the
// account has no queue and nothing reads one.
resource tableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(tableService.id, appPrincipalId, roles.storageTableDataContributor)
  scope: tableService
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
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
