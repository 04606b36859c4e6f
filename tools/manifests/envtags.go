package manifests

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// EnvVar is one environment variable a service reads through platform.LoadConfig.
type EnvVar struct {
	// Name is the full variable name, e.g. BULWARK_AUDIT_NATS_URL.
	Name string
	// Required is set for a field tagged required:"true" with no default.
	Required bool
	// Field is where it is declared, e.g. "audit.Config.NATS.URL", for messages.
	Field string
}

// ErrNoConfig reports a service module that declares no env-tagged Config yet.
var ErrNoConfig = errors.New("no env-tagged config struct")

// structDecl is one struct type found in the parsed source.
type structDecl struct {
	pkg     string // import path
	name    string
	st      *ast.StructType
	imports map[string]string // file's import alias -> import path
}

// sourceIndex holds the struct types of some modules, keyed by "importpath.Type".
type sourceIndex map[string]*structDecl

// indexModule parses every non-test Go file of the module in dir (skipping
// testdata and nested modules) and records its struct types.
func (ix sourceIndex) indexModule(dir string) (modulePath string, err error) {
	modulePath, err = readModulePath(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || fileExists(filepath.Join(p, "go.mod"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Size() == 0 {
			return nil // a file being created; it declares nothing yet
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse %s: %w", p, err)
		}
		rel, err := filepath.Rel(dir, filepath.Dir(p))
		if err != nil {
			return err
		}
		pkg := path.Join(modulePath, filepath.ToSlash(rel))
		imports := map[string]string{}
		for _, im := range f.Imports {
			ip, _ := strconv.Unquote(im.Path.Value)
			alias := path.Base(ip)
			if im.Name != nil {
				alias = im.Name.Name
			}
			imports[alias] = ip
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				if st, ok := ts.Type.(*ast.StructType); ok {
					ix[pkg+"."+ts.Name.Name] = &structDecl{pkg: pkg, name: ts.Name.Name, st: st, imports: imports}
				}
			}
		}
		return nil
	})
	return modulePath, err
}

// resolve returns the struct a field type names, if it is one in the index.
func (ix sourceIndex) resolve(from *structDecl, expr ast.Expr) *structDecl {
	switch t := expr.(type) {
	case *ast.Ident:
		return ix[from.pkg+"."+t.Name]
	case *ast.SelectorExpr:
		x, ok := t.X.(*ast.Ident)
		if !ok {
			return nil
		}
		if ip, ok := from.imports[x.Name]; ok {
			return ix[ip+"."+t.Sel.Name]
		}
	}
	return nil
}

func envFields(sd *structDecl) []*ast.Field {
	var out []*ast.Field
	for _, f := range sd.st.Fields.List {
		if name := fieldName(f); f.Tag == nil || !ast.IsExported(name) {
			continue
		}
		tag, _ := strconv.Unquote(f.Tag.Value)
		if _, ok := reflect.StructTag(tag).Lookup("env"); ok {
			out = append(out, f)
		}
	}
	return out
}

// fieldName is a field's name; an embedded field's is its type's (as in
// platform.Logging), "" for a type it cannot name.
func fieldName(f *ast.Field) string {
	if len(f.Names) > 0 {
		return f.Names[0].Name
	}
	t := f.Type
	if star, ok := t.(*ast.StarExpr); ok {
		t = star.X
	}
	switch t := t.(type) {
	case *ast.SelectorExpr:
		return t.Sel.Name
	case *ast.Ident:
		return t.Name
	}
	return ""
}

// collect walks sd like platform.LoadConfig does: a field whose type is a
// struct (other than time.Duration) extends the prefix with its env tag.
func (ix sourceIndex) collect(sd *structDecl, prefix, field string, out map[string]EnvVar, seen map[*structDecl]bool) {
	if seen[sd] { // a recursive config type cannot be loaded; do not loop on it
		return
	}
	seen[sd] = true
	defer delete(seen, sd)
	for _, f := range envFields(sd) {
		tag, _ := strconv.Unquote(f.Tag.Value)
		st := reflect.StructTag(tag)
		name := st.Get("env")
		fieldPath := field + "." + fieldName(f)
		if nested := ix.resolve(sd, f.Type); nested != nil {
			ix.collect(nested, prefix+name, fieldPath, out, seen)
			continue
		}
		_, hasDefault := st.Lookup("default")
		out[prefix+name] = EnvVar{Name: prefix + name, Required: st.Get("required") == "true" && !hasDefault, Field: fieldPath}
	}
}

// ServiceEnv returns the variables service svc reads, parsed from the Go
// source of services/<svc> (with nested config types followed into
// services/platform): every env-tagged struct of the service module that no
// other env-tagged struct of the module nests is a root read with the prefix
// BULWARK_<SVC>_. It returns ErrNoConfig when the module has none yet.
func ServiceEnv(servicesDir, svc string) (map[string]EnvVar, error) {
	ix := sourceIndex{}
	if _, err := ix.indexModule(filepath.Join(servicesDir, "platform")); err != nil {
		return nil, err
	}
	platformKeys := map[string]bool{}
	for k := range ix {
		platformKeys[k] = true
	}
	if _, err := ix.indexModule(filepath.Join(servicesDir, svc)); err != nil {
		return nil, err
	}
	var own []*structDecl
	for k, sd := range ix {
		if !platformKeys[k] && len(envFields(sd)) > 0 {
			own = append(own, sd)
		}
	}
	nested := map[*structDecl]bool{}
	for _, sd := range own {
		for _, f := range envFields(sd) {
			if n := ix.resolve(sd, f.Type); n != nil {
				nested[n] = true
			}
		}
	}
	sort.Slice(own, func(i, j int) bool { return own[i].pkg+own[i].name < own[j].pkg+own[j].name })
	out := map[string]EnvVar{}
	roots := 0
	for _, sd := range own {
		if nested[sd] {
			continue
		}
		roots++
		ix.collect(sd, "BULWARK_"+strings.ToUpper(svc)+"_", path.Base(sd.pkg)+"."+sd.name, out, map[*structDecl]bool{})
	}
	if roots == 0 {
		return nil, fmt.Errorf("services/%s: %w", svc, ErrNoConfig)
	}
	return out, nil
}

func readModulePath(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	return "", fmt.Errorf("%s: no module line", gomod)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
