// Key Vault for the Dynamics and Campaign secrets (and the webhook's shared secret). Access is by Azure
// RBAC only (no access policies); secrets are put in by the azd postprovision hook or the operator
// (docs/deploy.md), never by this template, so their values stay out of deployment history. The webhook
// secret is generated there when not given (a Bicep newGuid() default would replace it on every
// deployment and break the webhook that `d365 setup` registered with it).

param location string
param tags object = {}

@minLength(3)
@maxLength(24)
param name string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // App Service resolves Key Vault references from outside any virtual network and is not a trusted
  // service for the vault firewall: the public endpoint stays open, reads need Key Vault Secrets User.
  // checkov:skip=CKV_AZURE_109: Key Vault references of a Flex app without VNet integration use the public endpoint; RBAC-only access
  // checkov:skip=CKV_AZURE_189: Key Vault references of a Flex app without VNet integration use the public endpoint; RBAC-only access
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
