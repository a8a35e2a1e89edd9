package traffic

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/replay/replay/replayd/receiver"
)

// user is a pool entry: the user objects payloads carry.
type user struct {
	id         uint64
	name       string
	screenName string
	location   string
	descr      string
	followers  int
	friends    int
	statuses   int
	created    string
}

var words = strings.Fields(`the a replay webhook event stream today launch build ship deploy coffee morning
night team data kafka index partition offset great new thanks love this just what why how when
people world city music game sports news weather travel photo video live update release beta
product design code review bug fix test green red blue happy friday monday weekend vacation`)

var places = []string{"San Francisco, CA", "London", "Tokyo", "Berlin", "New York", "Lagos", "São Paulo", "Sydney", "Bengaluru", ""}

const twitterTime = "Mon Jan 02 15:04:05 +0000 2006"

func (g *Generator) text(minLen, maxLen int) string {
	n := minLen + g.rng.IntN(maxLen-minLen+1)
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[g.rng.IntN(len(words))])
	}
	s := b.String()
	return s[:min(len(s), maxLen)]
}

func (g *Generator) newUser() user {
	id := 1_000_000 + g.rng.Uint64N(1<<50)
	name := g.text(4, 20)
	return user{
		id: id, name: name, screenName: strings.ReplaceAll(name, " ", "_")[:min(len(name), 15)],
		location: places[g.rng.IntN(len(places))], descr: g.text(0, 160),
		followers: g.rng.IntN(100000), friends: g.rng.IntN(5000), statuses: g.rng.IntN(200000),
		created: time.Unix(1200000000+g.rng.Int64N(500000000), 0).UTC().Format(twitterTime),
	}
}

func (g *Generator) user() *user { return &g.users[g.rng.IntN(len(g.users))] }

// jsonStr appends s as a JSON string.
func jsonStr(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

func appendUser(b []byte, u *user) []byte {
	id := strconv.FormatUint(u.id, 10)
	b = append(b, `{"id":`...)
	b = append(b, id...)
	b = append(b, `,"id_str":"`...)
	b = append(b, id...)
	b = append(b, `","name":`...)
	b = jsonStr(b, u.name)
	b = append(b, `,"screen_name":`...)
	b = jsonStr(b, u.screenName)
	b = append(b, `,"location":`...)
	b = jsonStr(b, u.location)
	b = append(b, `,"url":null,"description":`...)
	b = jsonStr(b, u.descr)
	b = append(b, `,"protected":false,"verified":false,"followers_count":`...)
	b = strconv.AppendInt(b, int64(u.followers), 10)
	b = append(b, `,"friends_count":`...)
	b = strconv.AppendInt(b, int64(u.friends), 10)
	b = append(b, `,"listed_count":0,"favourites_count":0,"statuses_count":`...)
	b = strconv.AppendInt(b, int64(u.statuses), 10)
	b = append(b, `,"created_at":"`...)
	b = append(b, u.created...)
	b = append(b, `","profile_image_url_https":"https://pbs.twimg.com/profile_images/`...)
	b = append(b, id...)
	b = append(b, `/avatar_normal.jpg","default_profile":true,"default_profile_image":false}`...)
	return b
}

// appendTweet appends a tweet object; idStr, when not empty, is written first as "id_str".
func (g *Generator) appendTweet(b []byte, id uint64, ts int64, idFirst bool, textMax int) []byte {
	ids := strconv.FormatUint(id, 10)
	b = append(b, '{')
	if idFirst {
		b = append(b, `"id_str":"`...)
		b = append(b, ids...)
		b = append(b, `",`...)
	}
	b = append(b, `"created_at":"`...)
	b = time.UnixMilli(ts).UTC().AppendFormat(b, twitterTime)
	b = append(b, `","id":`...)
	b = append(b, ids...)
	if !idFirst {
		b = append(b, `,"id_str":"`...)
		b = append(b, ids...)
		b = append(b, '"')
	}
	b = append(b, `,"text":`...)
	b = jsonStr(b, g.text(10, textMax))
	b = append(b, `,"source":"\u003ca href=\"https:\/\/mobile.twitter.com\" rel=\"nofollow\"\u003eTwitter Web App\u003c\/a\u003e","truncated":false,"in_reply_to_status_id":null,"in_reply_to_status_id_str":null,"in_reply_to_user_id":null,"in_reply_to_user_id_str":null,"in_reply_to_screen_name":null,"user":`...)
	b = appendUser(b, g.user())
	b = append(b, `,"geo":null,"coordinates":null,"place":null,"contributors":null,"is_quote_status":false,"quote_count":0,"reply_count":`...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(50)), 10)
	b = append(b, `,"retweet_count":`...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(500)), 10)
	b = append(b, `,"favorite_count":`...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(2000)), 10)
	b = append(b, `,"entities":{"hashtags":[],"urls":[],"user_mentions":[],"symbols":[]},"favorited":false,"retweeted":false,"filter_level":"low","lang":"en","timestamp_ms":"`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `"}`...)
	return b
}

func appendTS(b []byte, ts int64) []byte {
	b = append(b, `"created_timestamp":"`...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, '"')
}

func appendUsers(b []byte, us ...*user) []byte {
	b = append(b, `"users":{`...)
	for i, u := range us {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = strconv.AppendUint(b, u.id, 10)
		b = append(b, `":`...)
		b = appendUser(b, u)
	}
	return append(b, '}')
}

// payload builds the Account Activity body of an event: {"for_user_id":…,"<type>":[{"id_str":ID,…}]}.
// The first event object's first field is always "id_str", the event id.
func (g *Generator) payload(typ string, id uint64, ts int64) []byte {
	b := make([]byte, 0, 3072)
	b = append(b, `{"for_user_id":"`...)
	b = append(b, g.cfg.ForUserID...)
	b = append(b, `","`...)
	b = append(b, typ...)
	b = append(b, `":[`...)
	ids := strconv.FormatUint(id, 10)
	idField := func() { b = append(b, `{"id_str":"`...); b = append(b, ids...); b = append(b, `",`...) }
	switch typ {
	case "tweet_create_events":
		b = g.appendTweet(b, id, ts, true, 280)
		b = append(b, ']')
	case "favorite_events":
		idField()
		b = append(b, `"id":"`...)
		b = strconv.AppendUint(b, g.rng.Uint64(), 16)
		b = append(b, `","created_at":"`...)
		b = time.UnixMilli(ts).UTC().AppendFormat(b, twitterTime)
		b = append(b, `","timestamp_ms":`...)
		b = strconv.AppendInt(b, ts, 10)
		b = append(b, `,"favorited_status":`...)
		b = g.appendTweet(b, 1_000_000_000_000_000_000+g.rng.Uint64N(1<<59), ts-g.rng.Int64N(86_400_000), false, 140)
		b = append(b, `,"user":`...)
		b = appendUser(b, g.user())
		b = append(b, "}]"...)
	case "follow_events", "block_events", "mute_events":
		idField()
		verb := map[string]string{"follow_events": "follow", "block_events": "block", "mute_events": "mute"}[typ]
		if g.rng.IntN(5) == 0 {
			verb = "un" + verb
		}
		b = append(b, `"type":"`...)
		b = append(b, verb...)
		b = append(b, `",`...)
		b = appendTS(b, ts)
		b = append(b, `,"target":`...)
		b = appendUser(b, g.user())
		b = append(b, `,"source":`...)
		b = appendUser(b, g.user())
		b = append(b, "}]"...)
	case "direct_message_events":
		s, r := g.user(), g.user()
		idField()
		b = append(b, `"type":"message_create","id":"`...)
		b = append(b, ids...)
		b = append(b, `",`...)
		b = appendTS(b, ts)
		b = append(b, `,"message_create":{"target":{"recipient_id":"`...)
		b = strconv.AppendUint(b, r.id, 10)
		b = append(b, `"},"sender_id":"`...)
		b = strconv.AppendUint(b, s.id, 10)
		b = append(b, `","message_data":{"text":`...)
		b = jsonStr(b, g.text(1, 400))
		b = append(b, `,"entities":{"hashtags":[],"symbols":[],"user_mentions":[],"urls":[]}}}}],"apps":{"268278":{"id":"268278","name":"Twitter Web Client","url":"http:\/\/twitter.com"}},`...)
		b = appendUsers(b, s, r)
	case "direct_message_indicate_typing_events", "direct_message_mark_read_events":
		s, r := g.user(), g.user()
		idField()
		b = appendTS(b, ts)
		b = append(b, `,"sender_id":"`...)
		b = strconv.AppendUint(b, s.id, 10)
		b = append(b, `","target":{"recipient_id":"`...)
		b = strconv.AppendUint(b, r.id, 10)
		b = append(b, `"}`...)
		if typ == "direct_message_mark_read_events" {
			b = append(b, `,"last_read_event_id":"`...)
			b = strconv.AppendUint(b, id-1-g.rng.Uint64N(1000), 10)
			b = append(b, '"')
		}
		b = append(b, "}],"...)
		b = appendUsers(b, s, r)
	case "tweet_delete_events":
		idField()
		b = append(b, `"status":{"id":"`...)
		b = strconv.AppendUint(b, 1_000_000_000_000_000_000+g.rng.Uint64N(1<<59), 10)
		b = append(b, `","user_id":"`...)
		b = strconv.AppendUint(b, g.user().id, 10)
		b = append(b, `"},"timestamp_ms":"`...)
		b = strconv.AppendInt(b, ts, 10)
		b = append(b, `"}]`...)
	}
	b = append(b, '}')
	return b
}

// EventIDOf reads the event id back from a body: the "id_str" of the first object of the first
// "*_events" array (receiver.EventIDOf, which the webhook receiver dedups by).
func EventIDOf(body []byte) (string, bool) { return receiver.EventIDOf(body) }
