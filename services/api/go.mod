module github.com/surveyhooks/surveyhooks/services/api

go 1.26.0

replace (
	github.com/surveyhooks/surveyhooks/pkg => ../../pkg
	github.com/surveyhooks/surveyhooks/proto => ../../proto
)
