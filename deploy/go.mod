module github.com/surveyhooks/surveyhooks/deploy

go 1.26.0

replace (
	github.com/surveyhooks/surveyhooks/pkg => ../pkg
	github.com/surveyhooks/surveyhooks/proto => ../proto
	github.com/surveyhooks/surveyhooks/services/api => ../services/api
	github.com/surveyhooks/surveyhooks/services/delivery => ../services/delivery
	github.com/surveyhooks/surveyhooks/services/fanout => ../services/fanout
	github.com/surveyhooks/surveyhooks/services/ingest => ../services/ingest
	github.com/surveyhooks/surveyhooks/services/sink => ../services/sink
)
