// The Flex Consumption plan and the Linux function app (Python 3.11). On Flex the runtime, the deployment
// source and the scale limits live in functionAppConfig, not in app settings. HTTPS only, TLS 1.2+,
// FTP off and no basic-auth publishing: code is deployed with an Entra identity (docs/deploy.md).

param location string
param tags object = {}
param name string
param planName string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Blob container URL the plan deploys the app package from.')
param deploymentStorageUrl string

@description('Every app setting (main.bicep builds them).')
param appSettings object

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 4

@minValue(1)
@maxValue(100)
param httpPerInstanceConcurrency int = 4

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy exists in some regions only; timers and the change-tracking sweep make up for a zone outage
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Dynamics 365 online posts the webhook over the internet; every function needs a function key
  // checkov:skip=CKV_AZURE_17: Dataverse webhooks cannot present client certificates; they send the function key and the shared-secret header
  // checkov:skip=CKV_AZURE_212: serverless plan, no always-ready instances: timers tolerate a cold start and Dataverse waits 60 s for the webhook
  // checkov:skip=CKV_AZURE_213: no long-lived instance for a health probe to evict on Flex Consumption; failures surface in run reports and Application Insights
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with the user-assigned identity (it holds Key Vault Secrets User).
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      // Set with the site, so the host's very first start already finds its storage and identity.
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentStorageUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
