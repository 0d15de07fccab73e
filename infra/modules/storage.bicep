// One StorageV2 account for the Functions host (AzureWebJobsStorage, the deployment package) and the
// integration's own state (Table: checkpoints and ledger; Blob: dead letters and run reports).
// Shared-key access is off: every client authenticates with Entra ID (rbac.bicep). No queue: nothing
// uses one (no queue trigger, no queue client), so no queue role either.

param location string
param tags object = {}

@minLength(3)
@maxLength(24)
param name string

@description('Blob container the Flex Consumption plan deploys the app package from.')
param deploymentContainerName string

@description('Blob container of the integration\'s dead letters and run reports (app setting STATE_CONTAINER).')
param stateContainerName string

@description('Days a run report is kept.')
@minValue(1)
param runReportRetentionDays int = 90

@description('Geo-redundant by default (available in every region): the ledger and checkpoints survive a regional disaster.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_GRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // The Flex Consumption app has no virtual network, so it reaches storage on the public endpoint; only
  // Entra-authenticated callers with a data role get in (shared keys and anonymous blobs are off).
  // checkov:skip=CKV_AZURE_35: public endpoint needed by the Flex app without VNet integration; Entra-only access
  // checkov:skip=CKV_AZURE_59: public endpoint needed by the Flex app without VNet integration; Entra-only access
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    // Dead letters and run reports deleted by mistake stay recoverable for a week.
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The containers the app writes: the Functions host's own (timer locks and host lease; function keys)
// and the integration's state. Created here so the app's roles can be scoped to each container
// (rbac.bicep) instead of the account: the host then finds them instead of creating them.
var hostContainerNames = [
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
]
var appContainerNames = concat(hostContainerNames, [
  stateContainerName
])

resource appContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in appContainerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

// Run reports pile up at one per timer run; they name records and errors, so they do not stay forever.
// (`latest.json` per flow is rewritten every run and never ages out.)
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-run-reports'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${stateContainerName}/runs/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: runReportRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output tableEndpoint string = account.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
// Every container the app writes (all exist once this module is deployed: a module's outputs come last).
output appContainerNames array = appContainerNames
