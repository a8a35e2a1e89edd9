package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"
)

// What a Client keeps between deliveries so that an event costs only its own work: the parsed
// URL of each webhook (endpoints) and an HMAC state per secret (signers), each a reused map.
// Both are bounded: past maxReused entries a map starts over, so a process that meets many URLs
// or secrets over its life holds at most that many.
const maxReused = 1024

// reused holds the values made for keys (URLs, secrets), at most maxReused of them. The entry used
// last is found without taking mu: a job's deliveries (hundreds in flight) use the same one.
type reused[T any] struct {
	last atomic.Pointer[reusedEntry[T]]
	mu   sync.Mutex
	m    map[string]*reusedEntry[T]
}

type reusedEntry[T any] struct {
	key string
	v   T
}

// getReused returns r's value for key, made by build on first use. The key is a string or bytes:
// looking bytes up converts nothing (a secret is signed with at every event).
func getReused[T any, K ~string | ~[]byte](r *reused[T], key K, build func(string) T) T {
	if e := r.last.Load(); e != nil && e.key == string(key) {
		return e.v
	}
	r.mu.Lock()
	e := r.m[string(key)]
	r.mu.Unlock()
	if e == nil {
		k := string(key)
		e = &reusedEntry[T]{key: k, v: build(k)}
		r.mu.Lock()
		if r.m == nil || len(r.m) >= maxReused {
			r.m = make(map[string]*reusedEntry[T])
		}
		r.m[k] = e
		r.mu.Unlock()
	}
	r.last.Store(e)
	return e.v
}

// endpoint is a webhook URL as the requests to it use it, parsed once.
type endpoint struct {
	u *url.URL // as http.NewRequest parses it; shared by every request, never modified
	// host is the request's Host header (the URL's host without an empty port, in ASCII),
	// requestURI what its request line asks for, key where its connections go, serverName the
	// name its TLS certificate must have.
	host, requestURI, serverName string
	key                          connKey
	// auth is the Authorization value http.Client derives from the URL's userinfo (Basic); ""
	// without one.
	auth string
	// err is a URL that cannot be delivered to (parseTarget's *TargetError): no attempt is made.
	// reqErr is one a request cannot be made for (http.NewRequest refuses it, or its host has no
	// ASCII form): every attempt fails with it, as before.
	err, reqErr error
}

// endpoints are the webhook URLs parsed, by URL.
type endpoints struct{ reused[*endpoint] }

// get returns rawURL's endpoint, parsing it on first use.
func (e *endpoints) get(rawURL string) *endpoint { return getReused(&e.reused, rawURL, parseEndpoint) }

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
	// As the Transport writes and dials it: the host in ASCII (an IDN in punycode), the default
	// port of the scheme when none is given.
	host, err := httpguts.PunycodeHostPort(req.Host)
	if err != nil {
		return &endpoint{u: u, reqErr: &TargetError{URL: u.Redacted(), Reason: "host: " + err.Error()}}
	}
	name := req.URL.Hostname()
	if ascii, err := httpguts.PunycodeHostPort(name); err == nil {
		name = ascii
	}
	port := req.URL.Port()
	tls := req.URL.Scheme == "https"
	if port == "" {
		port = "80"
		if tls {
			port = "443"
		}
	}
	ep := &endpoint{u: req.URL, host: host, requestURI: req.URL.RequestURI(), serverName: name,
		key: connKey{tls: tls, addr: net.JoinHostPort(name, port)}}
	if req.URL.User != nil {
		// What http.Client.send adds to a request whose URL has a userinfo.
		username := req.URL.User.Username()
		password, _ := req.URL.User.Password()
		ep.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(username+":"+password))
	}
	return ep
}

// signers signs bodies with HMAC-SHA256 as Sign does, reusing each secret's HMAC state (its
// padded keys) instead of deriving it again for every body: a pool of *macs per secret.
type signers struct{ reused[*sync.Pool] }

type mac struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// sign is Sign(secret, body).
func (s *signers) sign(secret, body []byte) string {
	p := getReused(&s.reused, secret, newMACPool)
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

// newMACPool is the pool of *macs of one secret.
func newMACPool(secret string) *sync.Pool {
	return &sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, []byte(secret))} }}
}
