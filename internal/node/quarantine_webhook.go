package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/quarantine"
)

// webhookQueue bounds the alerts waiting to be posted; further ones are
// dropped (and logged): an alert must never hold up the detector.
const webhookQueue = 64

// webhookAlert is the JSON body posted to quarantine_webhook_url.
type webhookAlert struct {
	Node     string    `json:"node"`   // the node reporting
	Event    string    `json:"event"`  // quarantined, evidence, lifted
	Member   string    `json:"member"` // the member concerned
	Reason   string    `json:"reason,omitempty"`
	Operator string    `json:"operator,omitempty"`
	At       time.Time `json:"at"`
	Evidence []string  `json:"evidence,omitempty"`
}

// webhook posts alerts from its own goroutine, one attempt each.
type webhook struct {
	url    string
	self   string
	log    *slog.Logger
	client *http.Client
	queue  chan webhookAlert
}

// webhookAlerters returns the webhook alerter of quarantine_webhook_url,
// or none. Its goroutine lives as long as the process: alerts are rare and
// the queue is bounded.
func webhookAlerters(c config.Config, logger *slog.Logger) ([]quarantine.Alerter, error) {
	if c.QuarantineWebhookURL == "" {
		return nil, nil
	}
	w := &webhook{url: c.QuarantineWebhookURL, self: c.NodeID, log: logger.With("component", "quarantine-webhook"),
		client: &http.Client{Timeout: 10 * time.Second}, queue: make(chan webhookAlert, webhookQueue)}
	go w.run()
	return []quarantine.Alerter{w}, nil
}

// Alert implements quarantine.Alerter without blocking.
func (w *webhook) Alert(a quarantine.Alert) {
	body := webhookAlert{Node: w.self, Event: a.Kind.String(), Member: string(a.Node), Reason: a.Reason, Operator: a.Operator, At: a.At.UTC()}
	for _, id := range a.Evidence {
		body.Evidence = append(body.Evidence, id.String())
	}
	select {
	case w.queue <- body:
	default:
		w.log.Warn("webhook queue full: alert not posted", "event", body.Event, "member", body.Member)
	}
}

func (w *webhook) run() {
	for a := range w.queue {
		if err := w.post(a); err != nil {
			w.log.Warn("quarantine webhook failed", "event", a.Event, "member", a.Member, "err", err)
		}
	}
}

func (w *webhook) post(a webhookAlert) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
