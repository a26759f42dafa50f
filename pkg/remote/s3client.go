package remote

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3Config says how to reach S3. Credentials come from the SDK's default
// chain (environment, shared config/credentials files, SSO, instance
// roles); nothing here ever prints them.
type S3Config struct {
	// EndpointURL selects an S3-compatible server (e.g. versitygw, MinIO);
	// it also turns on path-style addressing.
	EndpointURL string
	// ConfigFile replaces the shared config file, as AWS_CONFIG_FILE does.
	ConfigFile string
	// Region overrides the configured region; with neither, us-east-1.
	Region string
	// MaxAttempts per request, retries included; 0 means 10. Connection
	// errors and 5xx are retried with jittered exponential backoff.
	MaxAttempts int
	// Credentials, if set, replaces the default chain (tests).
	Credentials aws.CredentialsProvider
	// HTTPClient, if set, is used for all requests (tests).
	HTTPClient *http.Client
}

// NewS3Client builds a client from c.
func NewS3Client(ctx context.Context, c S3Config) (*s3.Client, error) {
	var opts []func(*config.LoadOptions) error
	if c.ConfigFile != "" {
		if _, err := os.Stat(c.ConfigFile); err != nil {
			return nil, fmt.Errorf("AWS config file: %w", err)
		}
		opts = append(opts, config.WithSharedConfigFiles([]string{c.ConfigFile}))
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(c.Credentials))
	}
	if c.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(c.HTTPClient))
	}
	attempts := c.MaxAttempts
	if attempts <= 0 {
		attempts = 10
	}
	opts = append(opts, config.WithRetryer(func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.MaxBackoff = 20 * time.Second
			// The default token bucket gives up after ~50 failed
			// attempts across all requests, which a multipart upload
			// with parallel parts exhausts during one server restart.
			o.RateLimiter = ratelimit.None
		})
	}))
	if c.EndpointURL != "" {
		u, err := url.Parse(c.EndpointURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("invalid endpoint URL %q: want http(s)://HOST[:PORT]", RedactURL(c.EndpointURL))
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	// Only compute the checksums S3 insists on: S3-compatible servers vary
	// in their support of the newer flexible checksums, and we verify
	// content with our own sha256 anyway.
	cfg.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	cfg.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.EndpointURL != "" {
			o.BaseEndpoint = aws.String(c.EndpointURL)
			o.UsePathStyle = true
		}
	}), nil
}

// S3Location is a bucket and a key prefix without slashes at either end.
type S3Location struct {
	Bucket, Prefix string
}

// ParseS3Location is the one parser of an S3 location given on the command
// line (buildupload s3, buildfetch --url, buildextend-aws --bucket): it
// accepts "s3://BUCKET/PREFIX", "BUCKET/PREFIX", "s3://BUCKET" or "BUCKET".
// Help text writes it s3://BUCKET/PREFIX.
func ParseS3Location(s string) (S3Location, error) {
	rest := strings.TrimPrefix(s, "s3://")
	if scheme, _, ok := strings.Cut(rest, "://"); ok && !strings.Contains(scheme, "/") {
		return S3Location{}, fmt.Errorf("invalid S3 location %q: want s3://BUCKET/PREFIX", RedactURL(s))
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	if strings.Contains(bucket, "@") {
		// No bucket name has one: this is user:password@, which the SDK
		// would not use and which must not be echoed.
		return S3Location{}, fmt.Errorf("invalid S3 location %q: credentials come from the AWS configuration, not the URL", RedactURL("s3://"+rest))
	}
	if bucket == "" || strings.ContainsAny(bucket, " \\:") {
		return S3Location{}, fmt.Errorf("invalid S3 location %q: want s3://BUCKET/PREFIX", s)
	}
	for _, seg := range strings.Split(prefix, "/") {
		if prefix != "" && (seg == "" || seg == "." || seg == "..") {
			return S3Location{}, fmt.Errorf("invalid S3 prefix %q", prefix)
		}
	}
	return S3Location{Bucket: bucket, Prefix: prefix}, nil
}

// Key returns the object key for rel (slash-separated) under the prefix.
func (l S3Location) Key(rel string) string {
	if l.Prefix == "" {
		return rel
	}
	return l.Prefix + "/" + rel
}

// URL returns s3://bucket/key for rel.
func (l S3Location) URL(rel string) string { return "s3://" + l.Bucket + "/" + l.Key(rel) }

func (l S3Location) String() string {
	if l.Prefix == "" {
		return "s3://" + l.Bucket
	}
	return "s3://" + l.Bucket + "/" + l.Prefix
}

// httpStatus returns the HTTP status of a failed SDK call, or 0.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.StatusCode
	}
	return 0
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func isNotFound(err error) bool {
	if httpStatus(err) == http.StatusNotFound {
		return true
	}
	switch apiCode(err) {
	case "NoSuchKey", "NotFound":
		return true
	}
	return false
}

// isConflict: the conditional write lost a race (412), or S3's 409 for a
// concurrent conditional write to the same key.
func isConflict(err error) bool {
	switch httpStatus(err) {
	case http.StatusPreconditionFailed, http.StatusConflict:
		return true
	}
	switch apiCode(err) {
	case "PreconditionFailed", "ConditionalRequestConflict":
		return true
	}
	return false
}

// isUnsupported: the server refused the conditional headers themselves.
func isUnsupported(err error) bool {
	if httpStatus(err) == http.StatusNotImplemented {
		return true
	}
	return apiCode(err) == "NotImplemented"
}
