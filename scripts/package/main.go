// Command package assembles the source archive that Cloud Run functions
// builds, for scripts/package.sh.
//
// The Go buildpack wants the function's package at the root of the upload and
// writes main itself, while this repository keeps its packages under
// functions/ and internal/. So the archive holds go.mod, go.sum, every package
// the function packages import from this module (only the files a linux/amd64
// build reads, so no tests and no testdata), and a generated root package that
// blank-imports each function package: its init registers every function, and
// FUNCTION_TARGET picks one.
//
// The output is deterministic: entries are sorted and carry a fixed time and
// mode, so the archive's hash changes only when the source does.
package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// RootFile is the generated root package's file name in the archive.
const RootFile = "relay.go"

// frameworkFunctions is the functions framework package the buildpack looks
// for among the root package's imports: when it is there, the generated main
// only blank-imports the root package (declarative registration); otherwise
// it would reference a Go function named after FUNCTION_TARGET, which does
// not exist here.
const frameworkFunctions = "github.com/GoogleCloudPlatform/functions-framework-go/functions"

// zipTime is the modification time of every entry (zip cannot store times
// before 1980).
var zipTime = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

func main() {
	root := flag.String("root", ".", "repository root (the directory holding go.mod)")
	out := flag.String("out", "dist/function-source.zip", "archive to write")
	flag.Parse()
	if err := run(*root, *out); err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
}

func run(root, out string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	files, err := collect(root)
	if err != nil {
		return err
	}
	sum, err := writeZip(out, files)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d files, sha256 %s\n", out, len(files), sum)
	return nil
}

// entry is one archive member: its contents come from disk (src) or memory.
type entry struct {
	src  string
	data []byte
}

// listedPackage holds the fields of `go list -json` that packaging needs.
type listedPackage struct {
	ImportPath string
	Dir        string
	Name       string
	Standard   bool
	Module     *struct{ Path string }
	GoFiles    []string
	CgoFiles   []string
	CFiles     []string
	HFiles     []string
	SFiles     []string
	SysoFiles  []string
	EmbedFiles []string
	Error      *struct{ Err string }
	DepsErrors []*struct{ Err string }
}

// collect returns the archive's members keyed by slash-separated path.
func collect(root string) (map[string]entry, error) {
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, fmt.Errorf("reading go.mod: %w", err)
	}
	if err := checkNoLocalReplace(goMod); err != nil {
		return nil, err
	}
	modPath, err := goList(root, "-m")
	if err != nil {
		return nil, err
	}
	modPath = strings.TrimSpace(modPath)

	if _, err := os.Stat(filepath.Join(root, "functions")); err != nil {
		return nil, fmt.Errorf("no functions/ directory in %s: there is nothing to package", root)
	}
	funcList, err := goList(root, "-f", "{{.ImportPath}}", "./functions/...")
	if err != nil {
		return nil, fmt.Errorf("listing function packages: %w", err)
	}
	functionPkgs := strings.Fields(funcList)
	if len(functionPkgs) == 0 {
		return nil, errors.New("no Go packages under functions/")
	}
	slices.Sort(functionPkgs)

	depsJSON, err := goList(root, "-deps", "-json", "./functions/...")
	if err != nil {
		return nil, fmt.Errorf("listing dependencies: %w", err)
	}
	files := map[string]entry{
		"go.mod": {src: filepath.Join(root, "go.mod")},
		"go.sum": {src: filepath.Join(root, "go.sum")},
	}
	dec := json.NewDecoder(strings.NewReader(depsJSON))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decoding go list output: %w", err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("package %s: %s", p.ImportPath, p.Error.Err)
		}
		if len(p.DepsErrors) > 0 {
			return nil, fmt.Errorf("package %s: %s", p.ImportPath, p.DepsErrors[0].Err)
		}
		if p.Standard || p.Module == nil || p.Module.Path != modPath {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			return nil, err
		}
		rel = filepath.ToSlash(rel)
		if !strings.HasPrefix(rel, "functions/") && !strings.HasPrefix(rel, "internal/") {
			return nil, fmt.Errorf("function packages import %s, which is outside functions/ and internal/ and would not be uploaded", p.ImportPath)
		}
		for _, group := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.HFiles, p.SFiles, p.SysoFiles, p.EmbedFiles} {
			for _, name := range group {
				files[path.Join(rel, filepath.ToSlash(name))] = entry{src: filepath.Join(p.Dir, name)}
			}
		}
	}
	if _, clash := files[RootFile]; clash {
		return nil, fmt.Errorf("%s already exists at the repository root", RootFile)
	}
	files[RootFile] = entry{data: rootPackage(functionPkgs)}
	return files, nil
}

// rootPackage is the source of the generated root package.
func rootPackage(functionPkgs []string) []byte {
	var b bytes.Buffer
	b.WriteString("// Code generated by scripts/package.sh. DO NOT EDIT.\n\n")
	b.WriteString("// Package gmailrelay is the root of the Cloud Run functions upload: importing\n")
	b.WriteString("// it registers every function, and FUNCTION_TARGET selects the one to serve.\n")
	b.WriteString("package gmailrelay\n\nimport (\n")
	fmt.Fprintf(&b, "\t_ %q // makes the buildpack generate a main for declarative registration\n\n", frameworkFunctions)
	for _, p := range functionPkgs {
		fmt.Fprintf(&b, "\t_ %q\n", p)
	}
	b.WriteString(")\n")
	return b.Bytes()
}

// checkNoLocalReplace refuses go.mod files that replace a module with a local
// directory, which the upload would not contain.
func checkNoLocalReplace(goMod []byte) error {
	for _, line := range strings.Split(string(goMod), "\n") {
		if i := strings.Index(line, "=>"); i >= 0 {
			target := strings.TrimSpace(line[i+2:])
			if strings.HasPrefix(target, ".") || strings.HasPrefix(target, "/") {
				return fmt.Errorf("go.mod replaces a module with the local directory %q, which is not part of the upload", target)
			}
		}
	}
	return nil
}

// goList runs `go list` in root for the platform Cloud Build targets.
func goList(root string, args ...string) (string, error) {
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outBytes, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(outBytes), nil
}

// writeZip writes files to out in name order and returns the archive's
// SHA-256. It writes a temporary file first, so a failed run never leaves a
// truncated archive behind.
func writeZip(out string, files map[string]entry) (string, error) {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".function-source-*.zip")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", err
	}

	h := sha256.New()
	zw := zip.NewWriter(io.MultiWriter(tmp, h))
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		e := files[name]
		data := e.data
		if data == nil {
			if data, err = os.ReadFile(e.src); err != nil {
				tmp.Close()
				return "", err
			}
		}
		hdr := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: zipTime}
		hdr.SetMode(0o644)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			tmp.Close()
			return "", err
		}
		if _, err := w.Write(data); err != nil {
			tmp.Close()
			return "", err
		}
	}
	if err := zw.Close(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
