package catalog

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func prov(name string, v Vendor) Provider {
	return Provider{Name: name, Kind: KindOpenAI, BaseURL: "http://x", Enabled: true, Vendor: v}
}

func newCat(t *testing.T, reqs map[string]Requirement, ps ...Provider) *Catalog {
	t.Helper()
	c, err := New(Params{Snapshot: Snapshot{Providers: ps, Requirements: reqs}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckVendor_RefusesExpiredOrMissingSOC2(t *testing.T) {
	c := newCat(t, nil)
	err := c.CheckVendor(prov("a", Vendor{SOC2ReportExpiry: t0.Add(-time.Hour)}), nil)
	if !errors.Is(err, ErrVendorRisk) || !strings.Contains(err.Error(), "expired on 2026-12-03") {
		t.Fatalf("err = %v", err)
	}
	if err := c.CheckVendor(prov("a", Vendor{}), nil); !errors.Is(err, ErrVendorRisk) {
		t.Fatalf("err = %v", err)
	}
	if err := c.CheckVendor(prov("a", Vendor{SOC2ReportExpiry: t0.Add(time.Hour)}), nil); err != nil {
		t.Fatal(err)
	}
}

func TestCheckVendor_DataClassesNeedTheirAgreements(t *testing.T) {
	c := newCat(t, nil)
	ok := t0.AddDate(0, 6, 0)
	if err := c.CheckVendor(prov("a", Vendor{SOC2ReportExpiry: ok}), []string{"PII.HEALTH"}); !errors.Is(err, ErrVendorRisk) || !strings.Contains(err.Error(), "BAA") {
		t.Fatalf("err = %v", err)
	}
	if err := c.CheckVendor(prov("a", Vendor{SOC2ReportExpiry: ok, BAASigned: true}), []string{"PII.HEALTH.LAB"}); err != nil {
		t.Fatal(err)
	}
	err := c.CheckVendor(prov("a", Vendor{SOC2ReportExpiry: ok, DPASigned: true}), []string{"PII.FINANCIAL"})
	if !errors.Is(err, ErrVendorRisk) || !strings.Contains(err.Error(), "zero-data-retention") {
		t.Fatalf("err = %v", err)
	}
	if err := c.CheckVendor(prov("a", Vendor{SOC2ReportExpiry: ok, DPASigned: true, ZeroDataRetention: true}), []string{"PII.FINANCIAL", "PII.EMAIL"}); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckVendor(prov("a", Vendor{SOC2ReportExpiry: ok}), []string{"PII.HEALTHY"}); err != nil {
		t.Fatalf("prefix without a dot matched: %v", err)
	}
}

func TestCheckVendor_RequirementTableIsConfigurable(t *testing.T) {
	c := newCat(t, map[string]Requirement{"SECRET": {DPA: true}})
	ok := t0.AddDate(1, 0, 0)
	if err := c.CheckVendor(prov("a", Vendor{SOC2ReportExpiry: ok}), []string{"PII.HEALTH"}); err != nil {
		t.Fatalf("default table still applied: %v", err)
	}
	if err := c.CheckVendor(prov("a", Vendor{SOC2ReportExpiry: ok}), []string{"SECRET"}); !errors.Is(err, ErrVendorRisk) {
		t.Fatalf("err = %v", err)
	}
}

func TestDaysUntilExpiry_CountsWholeDaysAndGoesNegative(t *testing.T) {
	for _, tc := range []struct {
		exp  time.Time
		want int
	}{{t0.AddDate(0, 0, 30), 30}, {t0.Add(36 * time.Hour), 1}, {t0.Add(-time.Hour), -1}, {t0.AddDate(0, 0, -3), -3}} {
		if got := (Vendor{SOC2ReportExpiry: tc.exp}).DaysUntilExpiry(t0); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.exp, got, tc.want)
		}
	}
}

type memPersist struct {
	saved []Snapshot
	fail  bool
}

func (m *memPersist) Save(s Snapshot) error {
	if m.fail {
		return errors.New("disk full")
	}
	m.saved = append(m.saved, s)
	return nil
}

func TestPut_ValidatesPersistsAndRollsBackOnSaveFailure(t *testing.T) {
	mp := &memPersist{}
	c, err := New(Params{Persister: mp, Snapshot: Snapshot{Providers: []Provider{prov("a", Vendor{})}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.PutRoute(Route{Alias: "m", Deployments: []Deployment{{Name: "d", Provider: "missing", Model: "x"}}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	if _, _, err := c.PutRoute(Route{Alias: "m", Deployments: []Deployment{{Name: "d", Provider: "a", Model: "x"}, {Name: "d", Provider: "a", Model: "y"}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	if _, _, err := c.PutProvider(Provider{Name: "az", Kind: KindAzureOpenAI, BaseURL: "u"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("azure without api_version: %v", err)
	}
	if _, existed, err := c.PutRoute(Route{Alias: "m", Deployments: []Deployment{{Name: "d", Provider: "a", Model: "x"}}}); err != nil || existed {
		t.Fatalf("%v %v", err, existed)
	}
	if len(mp.saved) != 1 || len(mp.saved[0].Routes) != 1 {
		t.Fatalf("saved %+v", mp.saved)
	}
	mp.fail = true
	if _, _, err := c.SetProviderEnabled("a", false); err == nil {
		t.Fatal("save failure ignored")
	}
	if p, _ := c.Provider("a"); !p.Enabled {
		t.Fatal("change kept although it was not saved")
	}
	if _, _, err := c.SetProviderEnabled("zzz", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}
