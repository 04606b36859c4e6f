package platform

import (
	"io"
	"log/slog"
	"os"
	"strings"
)

// NewLogger returns a slog logger writing to stderr: JSON unless format is
// "text", at level "debug", "info" (default), "warn" or "error".
func NewLogger(format, level string) *slog.Logger {
	return NewLoggerTo(os.Stderr, format, level)
}

// NewLoggerTo is NewLogger writing to w.
func NewLoggerTo(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if strings.EqualFold(format, "text") {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
