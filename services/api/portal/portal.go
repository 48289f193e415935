// Package portal serves surveyhooks' web pages: the subscriber portal (/portal/), which a survey
// platform opens for one of its customers with a one-time link, and the operator console
// (/console/), behind the admin token.
//
// Pages never reach a store themselves: every read and write goes through Backend.Do, which runs
// the JSON API's own handler for the session's project, so the portal validates, authorises and
// answers exactly as the API does. What the portal adds is the session (sealed cookies, CSRF,
// webhook scope, read-only), the forms and the charts. It never renders a secret unless the user
// asked to reveal it, and never loads anything from another host (strict Content-Security-Policy).
package portal

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"
)

// Backend is what the pages need of the API service.
type Backend interface {
	// Do runs the JSON API's operation method target (a path with its query) for the project, as
	// a request with that project's key would, and returns the status and body of its answer.
	Do(ctx context.Context, projectID, method, target string, body []byte) (int, []byte)
	// ProjectName returns the project's name, or false when there is no such project.
	ProjectName(id string) (string, bool)
	// StorageMasking returns the project's storage masking rules: what the delivery log keeps
	// masked of every request body.
	StorageMasking(projectID string) []apiv1.MaskingRule
	// RevealSecret returns the webhook's newest secret, for the project that owns it.
	RevealSecret(projectID, webhookID string) (string, error)
	// AdminToken reports whether token is the admin token.
	AdminToken(token string) bool
	// Overview gathers the console's figures across every project.
	Overview(ctx context.Context) (*Overview, error)
}

// Config configures the pages.
type Config struct {
	Backend Backend
	// SessionKey seals links and session cookies (32 bytes); derive it, never reuse a key.
	SessionKey []byte
	// FrameAncestors are the origins allowed to embed the portal in an iframe (the platform's
	// own pages); none: only this origin.
	FrameAncestors []string
	Log            *slog.Logger
	Now            func() time.Time
}

// Portal serves /portal/ and /console/.
type Portal struct {
	cfg   Config
	sess  *sessions
	pages map[string]*template.Template
	mux   *http.ServeMux
	csp   string
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New builds the pages; templates are parsed once, here.
func New(cfg Config) (*Portal, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := ValidOrigins(cfg.FrameAncestors); err != nil {
		return nil, err
	}
	sess, err := newSessions(cfg.SessionKey, cfg.Now)
	if err != nil {
		return nil, err
	}
	p := &Portal{cfg: cfg, sess: sess, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	if err := p.parse(); err != nil {
		return nil, err
	}
	ancestors := "'self'"
	for _, o := range cfg.FrameAncestors {
		ancestors += " " + o
	}
	p.csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors " + ancestors
	p.routes()
	return p, nil
}

// parts are the templates every page is parsed with.
var parts = []string{"templates/layout.html", "templates/filter.html", "templates/replays_table.html"}

func (p *Portal) parse() error {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return fmt.Errorf("listing templates: %w", err)
	}
	for _, n := range names {
		if slices.Contains(parts, n) {
			continue // parts of every page
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, append(slices.Clone(parts), n)...)
		if err != nil {
			return fmt.Errorf("parsing %s: %w", n, err)
		}
		p.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	return nil
}

// ValidOrigins checks origins for FrameAncestors: scheme and host (and port), nothing else, so
// nothing can be slipped into the Content-Security-Policy.
func ValidOrigins(origins []string) error {
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" ||
			u.RawQuery != "" || u.User != nil || strings.ContainsAny(o, " ;,*'\"") {
			return fmt.Errorf("%q is not an origin such as https://app.example.com", o)
		}
	}
	return nil
}

// Link mints a one-time sign-in link token for g; the caller builds the URL /portal/s/<token>.
func (p *Portal) Link(g Grant) string { return p.sess.link(g) }

// ServeHTTP serves every page with the security headers.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", p.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	// The sign-in link carries its token in the path: never in a Referer to another site. (Not
	// no-referrer: browsers then send "Origin: null" with forms, and writes check the origin.)
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/portal/static/") {
		h.Set("Cache-Control", "no-store")
	}
	p.mux.ServeHTTP(w, r)
}

func (p *Portal) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/portal/static/", http.FileServerFS(static))
	p.mux.Handle("GET /portal/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	}))
	p.mux.HandleFunc("GET /portal/s/{token}", p.signIn)
	p.mux.HandleFunc("POST /portal/signout", p.signOut)

	p.mux.HandleFunc("GET /portal/{$}", p.portal(false, p.listWebhooks))
	p.mux.HandleFunc("GET /portal/webhooks/new", p.portal(false, p.newWebhook))
	p.mux.HandleFunc("POST /portal/webhooks", p.portal(true, p.createWebhook))
	p.mux.HandleFunc("GET /portal/webhooks/{id}", p.portal(false, p.showWebhook))
	p.mux.HandleFunc("GET /portal/webhooks/{id}/edit", p.portal(false, p.editWebhook))
	p.mux.HandleFunc("POST /portal/webhooks/{id}/edit", p.portal(true, p.updateWebhook))
	p.mux.HandleFunc("POST /portal/webhooks/{id}/enabled", p.portal(true, p.toggleWebhook))
	p.mux.HandleFunc("POST /portal/webhooks/{id}/delete", p.portal(true, p.deleteWebhook))
	p.mux.HandleFunc("POST /portal/webhooks/{id}/test", p.portal(true, p.sendTest))
	p.mux.HandleFunc("POST /portal/webhooks/{id}/secret", p.portal(true, p.revealSecret))
	p.mux.HandleFunc("POST /portal/webhooks/{id}/rotate", p.portal(true, p.rotateSecret))
	p.mux.HandleFunc("POST /portal/webhooks/{id}/recover", p.portal(true, p.recoverWebhook))
	p.mux.HandleFunc("GET /portal/replays/{id}", p.portal(false, p.showReplay))
	p.mux.HandleFunc("GET /portal/attempts", p.portal(false, p.listAttempts))
	p.mux.HandleFunc("GET /portal/attempts/{id}", p.portal(false, p.showAttempt))
	p.mux.HandleFunc("GET /portal/dead-letters", p.portal(false, p.listDeadLetters))
	p.mux.HandleFunc("POST /portal/dead-letters/replay", p.portal(true, p.replayDeadLetters))
	p.mux.HandleFunc("POST /portal/dead-letters/{id}/replay", p.portal(true, p.replayDeadLetter))

	p.mux.HandleFunc("GET /console/{$}", p.console(p.overview))
	p.mux.HandleFunc("GET /console/signin", p.consoleSignInPage)
	p.mux.HandleFunc("POST /console/signin", p.consoleSignIn)
	p.mux.HandleFunc("POST /console/signout", p.consoleSignOut)
	p.mux.HandleFunc("POST /console/projects/{id}/portal", p.console(p.openPortal))

	p.mux.HandleFunc("/portal/", func(w http.ResponseWriter, r *http.Request) {
		p.render(w, r, http.StatusNotFound, "message", page{Title: "Page not found",
			Message: "There is no page at this address."})
	})
	p.mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		p.render(w, r, http.StatusNotFound, "message", page{Title: "Page not found", Console: true,
			Message: "There is no page at this address."})
	})
}

// logUnavailable is what pages say while the delivery log does not answer.
const logUnavailable = "The delivery log is temporarily unavailable; webhooks can still be managed. Try again in a moment."

// page is what every template receives; Data holds the page's own content.
type page struct {
	Title     string
	Project   string
	CSRF      string
	ReadOnly  bool
	Console   bool
	SignedIn  bool
	Notice    string
	Message   string
	BackURL   string
	BackLabel string
	Refresh   int // seconds: the page reloads itself (a job in progress); 0: never
	Data      any
}

// render writes a page; a template that fails is logged and answered with a bare 500, since
// half a page may already have been written.
func (p *Portal) render(w http.ResponseWriter, _ *http.Request, status int, name string, pg page) {
	t, ok := p.pages[name]
	if !ok {
		p.cfg.Log.Error("portal page missing", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf strings.Builder
	if err := t.ExecuteTemplate(&buf, "layout.html", pg); err != nil {
		p.cfg.Log.Error("rendering portal page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

// session is a signed-in portal user, as its handlers see it.
type session struct {
	Grant
	csrf    string
	project string // name
}

type portalHandler func(w http.ResponseWriter, r *http.Request, s *session) error

const (
	portalCookie  = "surveyhooks_portal"
	consoleCookie = "surveyhooks_console"
)

func (p *Portal) setCookie(w http.ResponseWriter, r *http.Request, name, path, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, Expires: expires, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// signIn exchanges a one-time link for a session cookie; a spent, expired or forged link gets a
// page that says which, and what to do.
func (p *Portal) signIn(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		return // a link checker looking: the link stays unspent
	}
	cookie, g, err := p.sess.exchange(r.PathValue("token"))
	if err != nil {
		msg := "This sign-in link is not valid. Open the portal again from your account to get a new link."
		switch {
		case errors.Is(err, errSpent):
			msg = "This sign-in link has already been used. Each link opens the portal once: open the portal again from your account to get a new one."
		case errors.Is(err, errExpired):
			msg = "This sign-in link has expired. Open the portal again from your account to get a new one."
		}
		p.render(w, r, http.StatusUnauthorized, "message", page{Title: "Cannot sign in", Message: msg})
		return
	}
	if _, ok := p.cfg.Backend.ProjectName(g.ProjectID); !ok {
		p.render(w, r, http.StatusNotFound, "message", page{Title: "Cannot sign in", Message: "This project no longer exists."})
		return
	}
	p.setCookie(w, r, portalCookie, "/portal/", cookie, g.Expires)
	http.Redirect(w, r, "/portal/", http.StatusSeeOther)
}

func (p *Portal) signOut(w http.ResponseWriter, r *http.Request) {
	if v, err := p.readSession(r, portalCookie, kindPortal); err == nil && validCSRF(v, r.PostFormValue("csrf")) {
		p.sess.end(v)
		p.setCookie(w, r, portalCookie, "/portal/", "", time.Unix(1, 0))
	}
	p.render(w, r, http.StatusOK, "message", page{Title: "Signed out", Message: "You have signed out of the portal."})
}

func (p *Portal) readSession(r *http.Request, name, kind string) (sealed, error) {
	c, err := r.Cookie(name)
	if err != nil {
		return sealed{}, errInvalid
	}
	return p.sess.open(c.Value, kind)
}

// sameOrigin refuses a write whose Origin header names another site: SameSite=Strict cookies and
// the CSRF token already stop it, this says so plainly.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	o = strings.TrimPrefix(strings.TrimPrefix(o, "https://"), "http://")
	return o == r.Host
}

// portal authorises a portal page: a valid session, and for writes (POST) a matching CSRF token
// and a session that may write.
func (p *Portal) portal(write bool, h portalHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := p.readSession(r, portalCookie, kindPortal)
		if err != nil {
			msg := "You are not signed in. Open the portal from your account to get a sign-in link."
			if errors.Is(err, errExpired) {
				msg = "Your portal session has expired. Open the portal again from your account to continue."
			}
			p.render(w, r, http.StatusUnauthorized, "message", page{Title: "Sign-in needed", Message: msg})
			return
		}
		name, ok := p.cfg.Backend.ProjectName(v.ProjectID)
		if !ok {
			p.render(w, r, http.StatusNotFound, "message", page{Title: "Project not found", Message: "This project no longer exists."})
			return
		}
		s := &session{Grant: v.Grant, csrf: v.CSRF, project: name}
		if write {
			r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
			if !sameOrigin(r) || !validCSRF(v, r.PostFormValue("csrf")) {
				p.render(w, r, http.StatusForbidden, "message", s.page("Request refused",
					"This form was not sent from this portal page (or the page is too old). Go back, reload the page and try again."))
				return
			}
			if v.ReadOnly {
				p.render(w, r, http.StatusForbidden, "message", s.page("Read-only access",
					"This portal session can look but not change anything."))
				return
			}
		}
		if err := h(w, r, s); err != nil {
			p.fail(w, r, s.page("", ""), err)
		}
	}
}

// page starts a page for this session.
func (s *session) page(title, message string) page {
	return page{Title: title, Message: message, Project: s.project, CSRF: s.csrf, ReadOnly: s.ReadOnly, SignedIn: true}
}

// fail answers a handler's error with a page: the API's own message for its errors, a plain
// "something went wrong" (and a log line) for anything else — never a stack trace.
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, pg page, err error) {
	var ae *httpapi.Error
	if errors.As(err, &ae) {
		pg.Title, pg.Message = "Cannot do that", ae.Message
		switch ae.Status {
		case http.StatusNotFound:
			pg.Title = "Not found"
		case http.StatusServiceUnavailable:
			// The API's message names the server it could not reach: not the subscriber's concern.
			pg.Title, pg.Message = "Temporarily unavailable", logUnavailable
		}
		p.render(w, r, ae.Status, "message", pg)
		return
	}
	p.cfg.Log.Error("portal page failed", "method", r.Method, "path", r.URL.Path, "err", err)
	pg.Title, pg.Message = "Something went wrong", "The page could not be shown. Try again in a moment."
	p.render(w, r, http.StatusInternalServerError, "message", pg)
}
