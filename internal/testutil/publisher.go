package testutil

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// RetryingPublisher publishes QoS 1 messages at a steady pace through a
// broker address, as a careful IoT client does: a publish that fails or
// is not acknowledged in time is retried (the client reconnects by
// itself) until it is acknowledged or Budget is spent; only then does it
// count as failed.
type RetryingPublisher struct {
	Addr, ID, Topic string
	// User and Password, when the broker asks for them.
	User, Password string
	Every          time.Duration
	Budget         time.Duration

	Sent, Retried, Failed atomic.Int64
	// MaxWait is the longest a publish waited for its acknowledgment
	// (retries included), in nanoseconds.
	MaxWait atomic.Int64
	stop    chan struct{}
	done    sync.WaitGroup
}

// Start connects and publishes until Stop.
func (p *RetryingPublisher) Start() error {
	o := mqtt.NewClientOptions().AddBroker("tcp://" + p.Addr).SetClientID(p.ID).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond).SetConnectTimeout(2 * time.Second).SetKeepAlive(5 * time.Second).
		SetCleanSession(true).SetOrderMatters(false).SetWriteTimeout(2 * time.Second).SetUsername(p.User).SetPassword(p.Password)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect %s: %v", p.ID, tok.Error())
	}
	p.stop = make(chan struct{})
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		defer c.Disconnect(100)
		t := time.NewTicker(p.Every)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			first := time.Now()
			deadline := first.Add(p.Budget)
			for attempt := 0; ; attempt++ {
				tok := c.Publish(p.Topic, 1, false, fmt.Sprintf("%s-%d", p.ID, i))
				if tok.WaitTimeout(time.Second) && tok.Error() == nil {
					p.Sent.Add(1)
					if w := int64(time.Since(first)); w > p.MaxWait.Load() {
						p.MaxWait.Store(w)
					}
					break
				}
				if attempt == 0 {
					p.Retried.Add(1)
				}
				if time.Now().After(deadline) {
					p.Failed.Add(1)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	return nil
}

// Stop ends the loop.
func (p *RetryingPublisher) Stop() {
	close(p.stop)
	p.done.Wait()
}
