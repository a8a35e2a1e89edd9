package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
)

// What a Client keeps between deliveries so that an event costs only its own work: the parsed
// URL of each webhook (endpoints) and an HMAC state per secret (signers). Both are bounded: past
// maxReused entries a map starts over, so a process that meets many URLs or secrets over its
// life holds at most that many.
const maxReused = 1024

// endpoint is a webhook URL as the requests to it use it, parsed once.
type endpoint struct {
	raw  string   // the URL as given
	u    *url.URL // as http.NewRequest parses it; shared by every request, never modified
	host string   // the request's Host, as http.NewRequest sets it
	// auth is the Authorization value http.Client derives from the URL's userinfo (Basic); nil
	// without one.
	auth []string
	// err is a URL that cannot be delivered to (parseTarget's *TargetError): no attempt is
	// made. reqErr is one http.NewRequest refuses: every attempt fails with it, as before.
	err, reqErr error
}

type endpoints struct {
	// last is the endpoint used last: a job's deliveries (hundreds in flight) find theirs there
	// without taking mu.
	last atomic.Pointer[endpoint]
	mu   sync.Mutex
	m    map[string]*endpoint
}

// get returns rawURL's endpoint, parsing it on first use.
func (e *endpoints) get(rawURL string) *endpoint {
	if ep := e.last.Load(); ep != nil && ep.raw == rawURL {
		return ep
	}
	e.mu.Lock()
	ep := e.m[rawURL]
	e.mu.Unlock()
	if ep == nil {
		ep = parseEndpoint(rawURL)
		e.mu.Lock()
		if e.m == nil || len(e.m) >= maxReused {
			e.m = make(map[string]*endpoint)
		}
		e.m[rawURL] = ep
		e.mu.Unlock()
	}
	e.last.Store(ep)
	return ep
}

func parseEndpoint(rawURL string) *endpoint {
	u, err := parseTarget(rawURL)
	if err != nil {
		return &endpoint{raw: rawURL, err: err}
	}
	// The request's URL is what http.NewRequest makes of the parsed URL's String(), as the
	// requests were made before endpoints (one per attempt).
	req, err := http.NewRequest(http.MethodPost, u.String(), nil)
	if err != nil {
		return &endpoint{raw: rawURL, u: u, reqErr: &TargetError{URL: u.Redacted(), Reason: err.Error()}}
	}
	ep := &endpoint{raw: rawURL, u: req.URL, host: req.Host}
	if req.URL.User != nil {
		// What http.Client.send adds to a request whose URL has a userinfo.
		username := req.URL.User.Username()
		password, _ := req.URL.User.Password()
		ep.auth = []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(username+":"+password))}
	}
	return ep
}

// signers signs bodies with HMAC-SHA256 as Sign does, reusing each secret's HMAC state (its
// padded keys) instead of deriving it again for every body.
type signers struct {
	last  atomic.Pointer[macPool] // the one used last, found without taking mu
	mu    sync.Mutex
	pools map[string]*macPool // by secret
}

// macPool holds the *macs of one secret.
type macPool struct {
	secret string
	sync.Pool
}

type mac struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// sign is Sign(secret, body).
func (s *signers) sign(secret, body []byte) string {
	p := s.pool(secret)
	m := p.Get().(*mac)
	m.h.Reset()
	m.h.Write(body)
	const prefix = "sha256="
	var out [len(prefix) + 44]byte // 44: the padded base64 of 32 bytes
	copy(out[:], prefix)
	base64.StdEncoding.Encode(out[len(prefix):], m.h.Sum(m.sum[:0]))
	p.Put(m)
	return string(out[:])
}

// pool returns secret's macPool, made on first use.
func (s *signers) pool(secret []byte) *macPool {
	if p := s.last.Load(); p != nil && p.secret == string(secret) {
		return p
	}
	s.mu.Lock()
	p := s.pools[string(secret)]
	if p == nil {
		if s.pools == nil || len(s.pools) >= maxReused {
			s.pools = make(map[string]*macPool)
		}
		key := string(secret)
		p = &macPool{secret: key}
		p.New = func() any { return &mac{h: hmac.New(sha256.New, []byte(key))} }
		s.pools[key] = p
	}
	s.mu.Unlock()
	s.last.Store(p)
	return p
}
