package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"net/http"
	"net/url"
	"sync"
)

// What a Client keeps between deliveries so that an event costs only its own work: the parsed
// URL of each webhook (endpoints) and an HMAC state per secret (signers). Both are bounded: past
// maxReused entries a map starts over, so a process that meets many URLs or secrets over its
// life holds at most that many.
const maxReused = 1024

// endpoint is a webhook URL as the requests to it use it, parsed once.
type endpoint struct {
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
	mu sync.Mutex
	m  map[string]*endpoint
}

// get returns rawURL's endpoint, parsing it on first use.
func (e *endpoints) get(rawURL string) *endpoint {
	e.mu.Lock()
	ep := e.m[rawURL]
	e.mu.Unlock()
	if ep != nil {
		return ep
	}
	ep = parseEndpoint(rawURL)
	e.mu.Lock()
	if e.m == nil || len(e.m) >= maxReused {
		e.m = make(map[string]*endpoint)
	}
	e.m[rawURL] = ep
	e.mu.Unlock()
	return ep
}

func parseEndpoint(rawURL string) *endpoint {
	u, err := parseTarget(rawURL)
	if err != nil {
		return &endpoint{err: err}
	}
	// The request's URL is what http.NewRequest makes of the parsed URL's String(), as the
	// requests were made before endpoints (one per attempt).
	req, err := http.NewRequest(http.MethodPost, u.String(), nil)
	if err != nil {
		return &endpoint{u: u, reqErr: &TargetError{URL: u.Redacted(), Reason: err.Error()}}
	}
	ep := &endpoint{u: req.URL, host: req.Host}
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
	mu    sync.Mutex
	pools map[string]*sync.Pool // by secret; each holds *mac
}

type mac struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// sign is Sign(secret, body).
func (s *signers) sign(secret, body []byte) string {
	s.mu.Lock()
	p := s.pools[string(secret)]
	if p == nil {
		if s.pools == nil || len(s.pools) >= maxReused {
			s.pools = make(map[string]*sync.Pool)
		}
		key := string(secret)
		p = &sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, []byte(key))} }}
		s.pools[key] = p
	}
	s.mu.Unlock()
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
