// Audit trails into the Log Analytics workspace: who read which Key Vault secret (AuditEvent, table
// AZKVAuditLogs) and who wrote or deleted state in the storage account (StorageBlobLogs,
// StorageTableLogs). Reads of the ledger happen for every record synced: they are left out by default
// because of their volume (and cost), and can be added with storageLogCategories.

@description('Resource id of the Log Analytics workspace the logs go to.')
param workspaceId string

param keyVaultName string
param storageAccountName string

@description('Storage log categories sent for the blob and table services.')
@minLength(1)
@allowed([
  'StorageRead'
  'StorageWrite'
  'StorageDelete'
])
param storageLogCategories array = [
  'StorageWrite'
  'StorageDelete'
]

var storageLogs = [
  for category in storageLogCategories: {
    category: category
    enabled: true
  }
]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource vaultAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    // Resource-specific table (AZKVAuditLogs) rather than the shared AzureDiagnostics.
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

resource blobAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: storageLogs
  }
}

resource tableAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: workspaceId
    logs: storageLogs
  }
}
