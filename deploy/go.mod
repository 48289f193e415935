module github.com/surveyhooks/surveyhooks/deploy

go 1.26.0

replace (
	github.com/surveyhooks/surveyhooks/pkg => ../pkg
	github.com/surveyhooks/surveyhooks/proto => ../proto
)
