// The benchmark peer: the Benthos stream engine (github.com/redpanda-data/benthos/v4, MIT)
// with its own `http_server` input and a Kafka output written here on franz-go
// (github.com/twmb/franz-go, BSD-3). Benthos core has no Kafka component (those live in
// Redpanda Connect, which this project does not use), hence the small output below:
// acks=all, idempotent producer (franz-go defaults), one Produce per message, the HTTP
// answer (sync_response) sent only after the broker acknowledged the write.
//
//	peer -c pipeline.yaml    (the usual Benthos command line)
package main

import (
	"context"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
)

type kafkaOutput struct {
	brokers []string
	topic   string
	timeout time.Duration
	client  *kgo.Client
}

func (k *kafkaOutput) Connect(ctx context.Context) error {
	c, err := kgo.NewClient(
		kgo.SeedBrokers(k.brokers...),
		kgo.DefaultProduceTopic(k.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.RecordDeliveryTimeout(k.timeout),
	)
	if err != nil {
		return err
	}
	k.client = c
	return nil
}

func (k *kafkaOutput) Write(ctx context.Context, m *service.Message) error {
	value, err := m.AsBytes()
	if err != nil {
		return err
	}
	key, _ := m.MetaGet("kafka_key")
	rec := &kgo.Record{Value: value}
	if key != "" {
		rec.Key = []byte(key)
	}
	return k.client.ProduceSync(ctx, rec).FirstErr()
}

func (k *kafkaOutput) Close(ctx context.Context) error {
	if k.client != nil {
		k.client.Close()
	}
	return nil
}

func main() {
	spec := service.NewConfigSpec().
		Summary("Writes each message to a Kafka topic and returns once acks=all is in.").
		Field(service.NewStringListField("seed_brokers")).
		Field(service.NewStringField("topic")).
		Field(service.NewDurationField("timeout").Default("5s")).
		Field(service.NewIntField("max_in_flight").Default(256))
	err := service.RegisterOutput("kafka_peer", spec,
		func(conf *service.ParsedConfig, _ *service.Resources) (service.Output, int, error) {
			brokers, err := conf.FieldStringList("seed_brokers")
			if err != nil {
				return nil, 0, err
			}
			topic, err := conf.FieldString("topic")
			if err != nil {
				return nil, 0, err
			}
			timeout, err := conf.FieldDuration("timeout")
			if err != nil {
				return nil, 0, err
			}
			inFlight, err := conf.FieldInt("max_in_flight")
			if err != nil {
				return nil, 0, err
			}
			return &kafkaOutput{brokers: brokers, topic: topic, timeout: timeout}, inFlight, nil
		})
	if err != nil {
		panic(err)
	}
	service.RunCLI(context.Background())
}
