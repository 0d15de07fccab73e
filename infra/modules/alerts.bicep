// Log search alert rules on the Application Insights component, and the action group they notify.
// Each rule's query is a file of infra/queries (docs/monitoring.md shows the same text, and says what to
// do when the rule fires); tests/infra/test_kql_names.py checks every metric, event and dimension name
// in them against what the code emits. Thresholds are parameters; each rule splits by its dimensions,
// so one alert names the flow, mapping or service concerned.

param location string
param tags object = {}

@description('Resource id of the Application Insights component the rules query.')
param applicationInsightsId string

@description('Prefix of the rule and action group names, e.g. acsd365-<token>.')
param namePrefix string

@description('Email addresses the alerts notify (common alert schema). No action group is created when neither emails nor a webhook is given: the alerts still show in Azure Monitor → Alerts.')
param emailReceivers array = []

@secure()
@description('HTTPS endpoint the alerts are POSTed to (common alert schema), e.g. an incident tool; none when empty. Secure: such URLs often carry a token.')
param webhookReceiverUrl string = ''

@description('Resource id of an existing action group to notify as well (e.g. the operations team\'s); none when empty.')
param existingActionGroupId string = ''

@description('Creates the rules enabled; false deploys them disabled.')
param alertsEnabled bool = true

@description('Rules deployed disabled while the others stay enabled.')
@allowed([
  'flow-not-succeeding'
  'dead-letters'
  'lag'
  'webhook-errors'
  'credentials-rejected'
])
param disabledAlerts array = []

@description('Fires when a timer flow has this many runs in a row that did not succeed (failed or partial).')
@minValue(1)
param failedRunsThreshold int = 3

@description('Fires when more records than this were dead-lettered in the last hour, per flow and mapping.')
@minValue(0)
param deadLettersThreshold int = 0

@description('Fires when a mapping\'s latest lag (oldest change not yet applied) is over this many seconds.')
@minValue(60)
param lagThresholdSeconds int = 1800

@description('Fires when the webhook answered more 4xx, or more 5xx, than this in 15 minutes.')
@minValue(0)
param webhookErrorsThreshold int = 10

@description('Fires when a service rejected the credentials more than this many times in 15 minutes (one 401 before a token refresh is normal).')
@minValue(0)
param credentialFailuresThreshold int = 2

var createActionGroup = !empty(emailReceivers) || !empty(webhookReceiverUrl)
var emailActions = [
  for (address, i) in emailReceivers: {
    name: 'email-${i}'
    emailAddress: address
    useCommonAlertSchema: true
  }
]
var webhookAction = {
  name: 'webhook'
  serviceUri: webhookReceiverUrl
  useCommonAlertSchema: true
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (createActionGroup) {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'acsd365'
    enabled: true
    emailReceivers: emailActions
    webhookReceivers: empty(webhookReceiverUrl) ? [] : [webhookAction]
  }
}

var createdActionGroup = createActionGroup ? [actionGroup.id] : []
var actionGroupIds = concat(createdActionGroup, empty(existingActionGroupId) ? [] : [existingActionGroupId])
var runbook = 'docs/monitoring.md, section "The alerts"'
var eachValue = {
  operator: 'Include'
  values: [
    '*'
  ]
}

var rules = [
  {
    name: 'flow-not-succeeding'
    displayName: 'acsd365: a flow has not succeeded for ${failedRunsThreshold} runs'
    description: 'A timer flow (contacts_sync, events_push, optout_sync, verify_sync) had ${failedRunsThreshold} or more runs in a row that failed or were partial. See ${runbook}.'
    severity: 1
    frequency: 'PT15M'
    window: 'PT15M'
    // Two days of runs: enough to see a daily flow (verify_sync) fail more than once.
    lookback: 'P2D'
    query: loadTextContent('../queries/flow-not-succeeding.kql')
    measure: 'runs_not_succeeded'
    dimensions: [
      union(eachValue, { name: 'event' })
    ]
    operator: 'GreaterThanOrEqual'
    threshold: failedRunsThreshold
  }
  {
    name: 'dead-letters'
    displayName: 'acsd365: records dead-lettered'
    description: 'Records went to the dead-letter store in the last hour: they wait for an operator. See ${runbook}.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT1H'
    lookback: null
    query: loadTextContent('../queries/dead-letters.kql')
    measure: 'dead_lettered'
    dimensions: [
      union(eachValue, { name: 'flow' })
      union(eachValue, { name: 'mapping' })
    ]
    operator: 'GreaterThan'
    threshold: deadLettersThreshold
  }
  {
    name: 'lag'
    displayName: 'acsd365: lag over ${lagThresholdSeconds} seconds'
    description: 'The oldest change not yet applied to a mapping is older than ${lagThresholdSeconds} seconds. See ${runbook}.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT30M'
    lookback: null
    query: loadTextContent('../queries/lag.kql')
    measure: 'lag_seconds'
    dimensions: [
      union(eachValue, { name: 'flow' })
      union(eachValue, { name: 'mapping' })
    ]
    operator: 'GreaterThan'
    threshold: lagThresholdSeconds
  }
  {
    name: 'webhook-errors'
    displayName: 'acsd365: webhook 4xx/5xx spike'
    description: 'The Dataverse webhook answered more than ${webhookErrorsThreshold} 4xx (or 5xx) in 15 minutes. See ${runbook}.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    lookback: null
    query: loadTextContent('../queries/webhook-errors.kql')
    measure: 'answers'
    dimensions: [
      union(eachValue, { name: 'status_class' })
    ]
    operator: 'GreaterThan'
    threshold: webhookErrorsThreshold
  }
  {
    name: 'credentials-rejected'
    displayName: 'acsd365: credentials rejected'
    description: 'Campaign, Dataverse, IMS or Entra rejected the integration\'s credentials more than ${credentialFailuresThreshold} times in 15 minutes: a secret expired or was rotated, or a permission was removed. See ${runbook}.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    lookback: null
    query: loadTextContent('../queries/credentials-rejected.kql')
    measure: 'rejected'
    dimensions: [
      union(eachValue, { name: 'service' })
    ]
    operator: 'GreaterThan'
    threshold: credentialFailuresThreshold
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [
  for rule in rules: {
    name: '${namePrefix}-${rule.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: alertsEnabled && !contains(disabledAlerts, rule.name)
      scopes: [
        applicationInsightsId
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      overrideQueryTimeRange: rule.lookback
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Maximum'
            metricMeasureColumn: rule.measure
            dimensions: rule.dimensions
            operator: rule.operator
            threshold: rule.threshold
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      // Resolved by itself once the query no longer crosses the threshold.
      autoMitigate: true
      actions: {
        actionGroups: actionGroupIds
      }
    }
  }
]

output actionGroupIds array = actionGroupIds
output alertRuleNames array = [for (rule, i) in rules: alertRules[i].name]
