// The integration's dashboard: an Azure Monitor workbook on the Application Insights component
// (infra/workbook/integration.workbook.json; its queries are checked by tests/infra/test_kql_names.py).

param location string
param tags object = {}

@description('Resource id of the Application Insights component the workbook queries.')
param applicationInsightsId string

param displayName string = 'ACS ⇄ Dynamics 365 integration'

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; this one is stable per component, so a redeploy updates it.
  name: guid(applicationInsightsId, 'acsd365-integration-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    version: 'Notebook/1.0'
    serializedData: string(union(loadJsonContent('../workbook/integration.workbook.json'), {
      fallbackResourceIds: [
        applicationInsightsId
      ]
    }))
  }
}

output id string = workbook.id
