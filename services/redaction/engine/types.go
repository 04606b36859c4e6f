// Package engine detects PII, secrets and prompt-injection markers in text and
// redacts, hashes, tokenizes and restores them. It is a plain library with no
// transport code, so the gateway and bulwarkctl use it in-process and the
// redaction service wraps it in an RPC.
//
// Detection runs one pass over a normalised copy of the text (width variants
// folded, zero-width and bidi controls removed), collects candidates at cheap
// literal anchors ('@', "://", key prefixes, digit groups, context words) and
// validates only those: checksums (Luhn, mod-97, mod-11, base58check, bech32,
// EIP-55, ABA, DEA), issuer ranges, libphonenumber metadata and nearby context
// words. Offsets in findings are UTF-8 byte offsets into the original text.
package engine

import "errors"

// Sentinel errors. None of them carries input text.
var (
	// ErrUnknownProfile means a profile name is not configured.
	ErrUnknownProfile = errors.New("unknown redaction profile")
	// ErrInvalidProfile means a profile cannot be used (e.g. a custom pattern does not compile).
	ErrInvalidProfile = errors.New("invalid redaction profile")
	// ErrInvalidParams means New was given unusable parameters.
	ErrInvalidParams = errors.New("invalid engine parameters")
)

// Action is what happens to a detected value. The numbers match the wire enum.
type Action int

// Actions.
const (
	ActionUnspecified Action = 0
	ActionAllow       Action = 1
	ActionMask        Action = 2
	ActionHash        Action = 3
	ActionTokenize    Action = 4
	ActionBlock       Action = 5
)

// String names the action.
func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "allow"
	case ActionMask:
		return "mask"
	case ActionHash:
		return "hash"
	case ActionTokenize:
		return "tokenize"
	case ActionBlock:
		return "block"
	}
	return "unspecified"
}

// Entity types, in Presidio's vocabulary where Presidio has a name for them.
const (
	EmailAddress    = "EMAIL_ADDRESS"
	PhoneNumber     = "PHONE_NUMBER"
	CreditCard      = "CREDIT_CARD"
	IBANCode        = "IBAN_CODE"
	IPAddress       = "IP_ADDRESS"
	MACAddress      = "MAC_ADDRESS"
	USSSN           = "US_SSN"
	USITIN          = "US_ITIN"
	USPassport      = "US_PASSPORT"
	USDriverLicense = "US_DRIVER_LICENSE"
	USBankNumber    = "US_BANK_NUMBER"
	ABARouting      = "ABA_ROUTING_NUMBER"
	UKNHS           = "UK_NHS"
	UKNINO          = "UK_NINO"
	Crypto          = "CRYPTO"
	URL             = "URL"
	MedicalLicense  = "MEDICAL_LICENSE"
	DateTime        = "DATE_TIME"
	Person          = "PERSON"
	Location        = "LOCATION"
	Secret          = "SECRET"
	PromptInjection = "PROMPT_INJECTION"
)

// dataClasses maps built-in entity types to the class policy reasons about.
var dataClasses = map[string]string{
	EmailAddress:    "PII.CONTACT",
	PhoneNumber:     "PII.CONTACT",
	Location:        "PII.CONTACT",
	CreditCard:      "PII.FINANCIAL",
	IBANCode:        "PII.FINANCIAL",
	USBankNumber:    "PII.FINANCIAL",
	ABARouting:      "PII.FINANCIAL",
	Crypto:          "PII.FINANCIAL",
	USSSN:           "PII.GOVERNMENT_ID",
	USITIN:          "PII.GOVERNMENT_ID",
	USPassport:      "PII.GOVERNMENT_ID",
	USDriverLicense: "PII.GOVERNMENT_ID",
	UKNINO:          "PII.GOVERNMENT_ID",
	UKNHS:           "PII.HEALTH",
	MedicalLicense:  "PII.HEALTH",
	IPAddress:       "PII.NETWORK",
	MACAddress:      "PII.NETWORK",
	URL:             "PII.ONLINE",
	Person:          "PII.IDENTITY",
	DateTime:        "PII.IDENTITY",
	Secret:          "SECRET.CREDENTIAL",
	PromptInjection: "RISK.PROMPT_INJECTION",
}

// EntityTypes lists the built-in entity types.
func EntityTypes() []string {
	return []string{EmailAddress, PhoneNumber, CreditCard, IBANCode, IPAddress, MACAddress, USSSN, USITIN,
		USPassport, USDriverLicense, USBankNumber, ABARouting, UKNHS, UKNINO, Crypto, URL, MedicalLicense,
		DateTime, Person, Location, Secret, PromptInjection}
}

// DataClassOf returns the data class of a built-in entity type, or "" if unknown.
func DataClassOf(entityType string) string { return dataClasses[entityType] }

// Finding is one detected value.
type Finding struct {
	// Segment is the id of the segment the finding is in (empty for Inspect).
	Segment    string
	EntityType string
	// Start and End are UTF-8 byte offsets into the original text.
	Start, End int
	// Rule names the detector, e.g. "email", "luhn", or a secret rule id such as "aws-access-key-id".
	Rule        string
	Score       float64
	DataClass   string
	Action      Action
	Replacement string
}

// CustomRule is an extra detector supplied with a profile.
type CustomRule struct {
	EntityType string
	// Pattern is an RE2 expression; either Pattern or Terms is set.
	Pattern string
	// Terms are matched case-insensitively on word boundaries.
	Terms     []string
	DataClass string
	Score     float64
}

// Profile chooses actions per entity type.
type Profile struct {
	Name        string
	Description string
	// DefaultAction applies to entity types not in Actions.
	DefaultAction Action
	// Actions per entity type; "SECRET" covers all secrets and "SECRET:<rule>" one rule.
	Actions map[string]Action
	// MinScore drops findings below it.
	MinScore    float64
	CustomRules []CustomRule
	// BlockInjectionScore, when above 0, blocks requests whose injection score reaches it.
	BlockInjectionScore float64
}

// Segment is one piece of text of a request.
type Segment struct {
	ID   string
	Text string
}

// TokenMapEntry maps one placeholder back to its original.
type TokenMapEntry struct {
	Placeholder string
	Original    string
	EntityType  string
}

// InspectResult is what Inspect found.
type InspectResult struct {
	Findings       []Finding
	DataClasses    []string
	InjectionScore float64
}

// RedactResult is the outcome of Redact.
type RedactResult struct {
	Segments       []Segment
	Findings       []Finding
	TokenMap       []TokenMapEntry
	Blocked        bool
	BlockReasons   []string
	DataClasses    []string
	InjectionScore float64
}
