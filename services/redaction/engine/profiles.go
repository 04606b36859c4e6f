package engine

// BuiltinProfiles returns the profiles every engine starts with.
//
//   - default: tokenize PII (reversible, restored in answers), block secrets,
//     report prompt injection without blocking, URLs reported but left alone.
//   - strict: as default, plus lower-confidence findings and blocking of
//     requests whose prompt-injection score reaches 0.8.
//   - audit-only: change nothing, report everything.
//   - mask: one-way masking of everything (for logs and exports).
func BuiltinProfiles() []Profile {
	return []Profile{
		{
			Name:          "default",
			Description:   "Tokenize PII reversibly, block secrets, report prompt injection.",
			DefaultAction: ActionTokenize,
			Actions:       map[string]Action{Secret: ActionBlock, URL: ActionAllow, PromptInjection: ActionAllow},
			MinScore:      0.5,
		},
		{
			Name:                "strict",
			Description:         "Tokenize PII including low-confidence matches, block secrets and likely prompt injection.",
			DefaultAction:       ActionTokenize,
			Actions:             map[string]Action{Secret: ActionBlock, URL: ActionAllow, PromptInjection: ActionAllow},
			MinScore:            0.35,
			BlockInjectionScore: 0.8,
		},
		{
			Name:          "audit-only",
			Description:   "Report everything, change nothing.",
			DefaultAction: ActionAllow,
			MinScore:      0.5,
		},
		{
			Name:          "mask",
			Description:   "Mask every finding one-way with its type, e.g. [EMAIL_ADDRESS].",
			DefaultAction: ActionMask,
			Actions:       map[string]Action{URL: ActionAllow},
			MinScore:      0.5,
		},
	}
}
