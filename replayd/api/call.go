package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// Call makes one request of the API at base (http://host:port) with an app's bearer token and
// decodes the JSON answer into out; an answer of 300 or more is an error holding its body.
// replayd demo and bench call the API through it.
func Call(ctx context.Context, hc *http.Client, base, token, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, body)
	}
	return json.Unmarshal(body, out)
}
