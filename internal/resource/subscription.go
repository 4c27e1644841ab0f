package resource

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
)

// PayloadContentURL is the extension on Subscription.channel.payload (the
// R4 Subscriptions Backport IG's) that chooses how much a notification
// carries: empty, id-only or full-resource.
const PayloadContentURL = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"

// SubscriptionSpec is what the notifier (package subscription) needs of a
// Subscription.
type SubscriptionSpec struct {
	Status   string
	Criteria *search.Request
	// Query is the criteria's query string (after "Type?").
	Query    string
	Endpoint string
	// Payload is the MIME type ("" : no body); Content empty, id-only or
	// full-resource.
	Payload, Content string
	// Headers are channel.header split at the first ":".
	Headers [][2]string
}

type subscriptionJSON struct {
	Status   string `json:"status"`
	Criteria string `json:"criteria"`
	Channel  struct {
		Type     string   `json:"type"`
		Endpoint string   `json:"endpoint"`
		Payload  string   `json:"payload"`
		Header   []string `json:"header"`
		PayloadX struct {
			Extension []struct {
				URL       string `json:"url"`
				ValueCode string `json:"valueCode"`
			} `json:"extension"`
		} `json:"_payload"`
	} `json:"channel"`
}

// ParseSubscription reads and checks a Subscription: a rest-hook channel
// to an absolute http(s) endpoint, criteria "Type?search" the search
// registry can run, payload empty or application/fhir+json, headers
// "Name: value". Errors are 422s naming the element.
func ParseSubscription(reg *fhir.Registry, raw []byte) (*SubscriptionSpec, error) {
	var s subscriptionJSON
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fault.New(fault.Invalid, "Subscription", "not a Subscription: %v", err)
	}
	bad := func(expr, format string, args ...any) error {
		return fault.New(fault.Unprocessable, expr, format, args...)
	}
	spec := &SubscriptionSpec{Status: s.Status, Endpoint: s.Channel.Endpoint, Payload: s.Channel.Payload, Content: "full-resource"}
	typ, query, _ := strings.Cut(s.Criteria, "?")
	if !fhir.IsResourceType(typ) {
		return nil, bad("Subscription.criteria", "the criteria must be Type?search with a FHIR resource type, got %q", typ)
	}
	spec.Query = query
	// Search parameters only (result parameters change no match); no
	// query: every resource of the type.
	c, err := search.Parse(reg, typ, url.Values{}, false)
	if query != "" {
		c, err = search.ParseCriteria(reg, typ, query)
	}
	if err != nil {
		return nil, bad("Subscription.criteria", "the criteria cannot be searched: %s", err.Error())
	}
	spec.Criteria = c
	if s.Channel.Type != "rest-hook" {
		return nil, bad("Subscription.channel.type", "only rest-hook channels are supported")
	}
	if u, err := url.Parse(s.Channel.Endpoint); err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, bad("Subscription.channel.endpoint", "must be an absolute http(s) URL")
	}
	switch s.Channel.Payload {
	case "":
		spec.Content = "empty"
	case "application/fhir+json", "application/json":
	default:
		return nil, bad("Subscription.channel.payload", "must be application/fhir+json or absent")
	}
	for _, e := range s.Channel.PayloadX.Extension {
		if e.URL != PayloadContentURL {
			continue
		}
		switch e.ValueCode {
		case "empty", "id-only", "full-resource":
			if s.Channel.Payload == "" && e.ValueCode != "empty" {
				return nil, bad("Subscription.channel.payload", "%s needs a payload MIME type", e.ValueCode)
			}
			spec.Content = e.ValueCode
		default:
			return nil, bad("Subscription.channel.payload", "the payload content must be empty, id-only or full-resource")
		}
	}
	for i, h := range s.Channel.Header {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
			return nil, bad("Subscription.channel.header["+strconv.Itoa(i)+"]", "must be \"Name: value\"")
		}
		spec.Headers = append(spec.Headers, [2]string{name, strings.TrimSpace(value)})
	}
	return spec, nil
}

// checkSubscription rejects a Subscription the notifier could not serve;
// res nil (a delete) and other types pass.
func (s *Service) checkSubscription(res *fhir.Resource) error {
	if res == nil || res.Type() != "Subscription" {
		return nil
	}
	_, err := ParseSubscription(s.reg, res.Bytes())
	return err
}
