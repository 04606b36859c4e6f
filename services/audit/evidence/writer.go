package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Header is everything in a bundle before the records.
type Header struct {
	Manifest     Manifest
	ManifestNote []byte
	PublicKeyPEM string
	Checkpoints  []CheckpointEntry
	Consistency  []ConsistencyEntry
}

// Writer streams a bundle. Records are buffered one records file at a time.
type Writer struct {
	gz      *gzip.Writer
	tw      *tar.Writer
	mtime   time.Time
	buf     bytes.Buffer
	enc     *json.Encoder
	inFile  int
	fileNum int
	header  bool
	closed  bool
}

// NewWriter starts a bundle on w.
func NewWriter(w io.Writer) *Writer {
	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	wr := &Writer{gz: gz, tw: tar.NewWriter(gz), mtime: time.Now().UTC().Truncate(time.Second)}
	wr.enc = json.NewEncoder(&wr.buf)
	wr.enc.SetEscapeHTML(false)
	return wr
}

func (w *Writer) file(name string, data []byte) error {
	if err := w.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: w.mtime, Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := w.tw.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

func jsonl[T any](items []T) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// WriteHeader writes everything but the records; call it once, first.
func (w *Writer) WriteHeader(h Header) error {
	if w.header {
		return errors.New("evidence: header already written")
	}
	w.header = true
	h.Manifest.Format = Format
	man, err := json.MarshalIndent(h.Manifest, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	cps, err := jsonl(h.Checkpoints)
	if err != nil {
		return fmt.Errorf("encode checkpoints: %w", err)
	}
	cons, err := jsonl(h.Consistency)
	if err != nil {
		return fmt.Errorf("encode consistency proofs: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"README.md", []byte(auditorReadme)},
		{"manifest.json", append(man, '\n')},
		{"manifest.note", h.ManifestNote},
		{"verifier-key.txt", []byte(h.Manifest.VerifierKey + "\n")},
		{"public-key.pem", []byte(h.PublicKeyPEM)},
		{"checkpoints.jsonl", cps},
		{"consistency.jsonl", cons},
	} {
		if err := w.file(f.name, f.data); err != nil {
			return err
		}
	}
	return nil
}

// WriteRecord adds the next record; records must come in leaf order.
func (w *Writer) WriteRecord(r *Record) error {
	if !w.header {
		return errors.New("evidence: WriteRecord before WriteHeader")
	}
	if err := w.enc.Encode(r); err != nil {
		return fmt.Errorf("encode record %d: %w", r.Index, err)
	}
	w.inFile++
	if w.inFile == RecordsPerFile {
		return w.flushRecords()
	}
	return nil
}

func (w *Writer) flushRecords() error {
	if w.inFile == 0 {
		return nil
	}
	if err := w.file(recordsFileName(w.fileNum), w.buf.Bytes()); err != nil {
		return err
	}
	w.buf.Reset()
	w.inFile = 0
	w.fileNum++
	return nil
}

// Flush pushes compressed bytes written so far to the underlying writer.
func (w *Writer) Flush() error { return w.gz.Flush() }

// Close writes the last records file and ends the archive.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.flushRecords(); err != nil {
		return err
	}
	if err := w.tw.Close(); err != nil {
		return fmt.Errorf("close tar: %w", err)
	}
	if err := w.gz.Close(); err != nil {
		return fmt.Errorf("close gzip: %w", err)
	}
	return nil
}
