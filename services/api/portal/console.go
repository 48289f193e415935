package portal

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Overview is the operator console's picture of the whole service.
type Overview struct {
	Projects []ProjectStats
	Slowest  []EndpointStats // by p99 over 24 h
	Failing  []EndpointStats // by failure rate over 24 h
	Tiers    []TierStats
	Lag      []GroupLag
	// Operational are the platform's own endpoints for webhook.failing, webhook.disabled, … —
	// shown here, managed through the API (/v1/operational-webhooks).
	Operational []OperationalHook
	Problems    []string // parts that could not be read, and why
}

// OperationalHook is one operational webhook as the console lists it.
type OperationalHook struct {
	ID, Name, URL  string
	Events         []string
	Enabled        bool
	DisabledReason string    // "failing", "gone", or "" (switched off by hand)
	FailingSince   time.Time // zero: healthy
	Failures       int32     // consecutive failed attempts when last written
}

// State says in words whether the platform hears from it.
func (o OperationalHook) State() string {
	switch {
	case !o.Enabled && o.DisabledReason != "":
		return "disabled (" + o.DisabledReason + ")"
	case !o.Enabled:
		return "disabled"
	case !o.FailingSince.IsZero():
		return fmt.Sprintf("failing since %s (%d failures in a row)", o.FailingSince.UTC().Format("2006-01-02 15:04 UTC"), o.Failures)
	}
	return "enabled"
}

// ProjectStats is one project's last 24 hours.
type ProjectStats struct {
	ID, Name    string
	Webhooks    int
	Attempts    uint64
	Failed      uint64
	DeadLetters uint64 // not replayed
}

// FailureRate is Failed over Attempts, as a percentage ("" without attempts).
func (p ProjectStats) FailureRate() string { return percent(p.Failed, p.Attempts) }

// EndpointStats is one webhook's last 24 hours.
type EndpointStats struct {
	ProjectID, ProjectName, WebhookID, Name string
	Attempts, Failed                        uint64
	P99Ms                                   float64
}

// FailureRate is Failed over Attempts, as a percentage.
func (e EndpointStats) FailureRate() string { return percent(e.Failed, e.Attempts) }

// P99 is the p99 latency, formatted.
func (e EndpointStats) P99() string { return ms(e.P99Ms) }

// TierStats is one retry tier's backlog.
type TierStats struct {
	Topic     string
	Depth     int64
	OldestAge time.Duration // 0: empty or unknown
}

// GroupLag is one consumer group's lag on one topic, summed over partitions.
type GroupLag struct {
	Group, Topic string
	Lag          int64
}

func percent(n, of uint64) string {
	if of == 0 {
		return ""
	}
	return formatPercent(100 * float64(n) / float64(of))
}

type consoleHandler func(w http.ResponseWriter, r *http.Request, v sealed) error

// console authorises a console page with the console session; POSTs also need its CSRF token.
func (p *Portal) console(h consoleHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := p.readSession(r, consoleCookie, kindConsole)
		if err != nil {
			http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && (!sameOrigin(r) || !validCSRF(v, r.PostFormValue("csrf"))) {
			p.render(w, r, http.StatusForbidden, "message", page{Title: "Request refused", Console: true, SignedIn: true, CSRF: v.CSRF,
				Message: "This form was not sent from this console page (or the page is too old). Reload the page and try again."})
			return
		}
		if err := h(w, r, v); err != nil {
			p.fail(w, r, page{Console: true, SignedIn: true, CSRF: v.CSRF}, err)
		}
	}
}

// consoleSession lasts a working day; the admin token signs in again after.
const consoleSession = 8 * time.Hour

func (p *Portal) consoleSignInPage(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusOK, "signin", page{Title: "Operator console", Console: true})
}

func (p *Portal) consoleSignIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if !sameOrigin(r) || !p.cfg.Backend.AdminToken(r.PostFormValue("token")) {
		p.render(w, r, http.StatusUnauthorized, "signin", page{Title: "Operator console", Console: true,
			Message: "That is not the admin token (SURVEYHOOKS_ADMIN_TOKEN)."})
		return
	}
	exp := p.cfg.Now().Add(consoleSession)
	p.setCookie(w, r, consoleCookie, "/console/", p.sess.session(kindConsole, Grant{Expires: exp}), exp)
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

func (p *Portal) consoleSignOut(w http.ResponseWriter, r *http.Request) {
	if v, err := p.readSession(r, consoleCookie, kindConsole); err == nil &&
		subtle.ConstantTimeCompare([]byte(v.CSRF), []byte(r.PostFormValue("csrf"))) == 1 {
		p.sess.end(v)
		p.setCookie(w, r, consoleCookie, "/console/", "", time.Unix(1, 0))
	}
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}

func (p *Portal) overview(w http.ResponseWriter, r *http.Request, v sealed) error {
	o, err := p.cfg.Backend.Overview(r.Context())
	if err != nil {
		return err
	}
	p.render(w, r, http.StatusOK, "console", page{Title: "Operator console", Console: true, SignedIn: true, CSRF: v.CSRF, Data: o})
	return nil
}

// openPortal opens a project's portal for the operator: a full, writable session of an hour.
func (p *Portal) openPortal(w http.ResponseWriter, r *http.Request, _ sealed) error {
	id := r.PathValue("id")
	if _, ok := p.cfg.Backend.ProjectName(id); !ok {
		return notFoundError("project", id)
	}
	g := Grant{ProjectID: id, Expires: p.cfg.Now().Add(time.Hour)}
	p.setCookie(w, r, portalCookie, "/portal/", p.sess.session(kindPortal, g), g.Expires)
	target := "/portal/"
	if wh := r.PostFormValue("webhook_id"); wh != "" {
		target = "/portal/webhooks/" + url.PathEscape(wh)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}
