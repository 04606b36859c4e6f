package policy

// DevDefault is the policy of an environment that has none yet and is listed as
// a development environment: every role whose permissions include the LLM
// actions may use any model, with generous limits, failing open on rate limiting;
// financial PII only goes to providers with a DPA and zero retention; secrets go
// nowhere. Other environments without a policy refuse every LLM call (fail
// closed) until a policy is approved for them.
const DevDefault = `# Built-in development policy (version "0").
defaults:
  redaction_profile: default
  rate_limit_failure_mode: open
  payload_retention: hash_only
  strict_audit: false
  limits:
    - name: dev-requests-per-minute
      kind: requests
      dimensions: [principal]
      limit: 600
      period: 1m
      burst: 60
mfa:
  actions: [change.break_glass]
providers:
  openai: {dpa: true, zero_retention: false, region: us}
  anthropic: {dpa: true, zero_retention: true, region: us}
  simulator: {dpa: true, zero_retention: true, region: local}
data_classes:
  - class: "SECRET*"
    deny: true
  - class: PII.FINANCIAL
    when: provider.dpa && provider.zero_retention
rules:
  - name: llm-for-everyone-permitted
    effect: allow
    actions: ["llm.*"]
`

// ClosedDefault is the policy of a non-development environment that has none:
// no rule allows any LLM action, so every call is refused.
const ClosedDefault = `# Built-in closed policy (version "0"): no policy has been approved for this environment.
defaults:
  rate_limit_failure_mode: closed
  strict_audit: true
rules: []
`
