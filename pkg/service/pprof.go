package service

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/config"
)

// PprofAddrEnv names the variable that, when set, serves Go's profiler on that address. It is off
// by default; the bench sets it to profile a service under load. Only loopback addresses are
// accepted: profiles reveal memory contents and must never be reachable from outside.
const PprofAddrEnv = "SURVEYHOOKS_PPROF_ADDR"

// startPprof serves /debug/pprof/ on addr on its own mux (never http.DefaultServeMux).
func startPprof(addr string, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %w", PprofAddrEnv, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s: want a loopback address, got %q", PprofAddrEnv, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listening on %s: %w", PprofAddrEnv, addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("profiler listening", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}

func pprofFromEnv(log *slog.Logger, e config.Env) {
	if addr := e.Get(PprofAddrEnv); addr != "" {
		if err := startPprof(addr, log); err != nil {
			log.Warn("profiler not started", "err", err)
		}
	}
}
