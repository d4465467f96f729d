package message

import (
	"errors"
	"fmt"
	"mime"
	"strings"
	"unicode/utf8"
)

// Limits of a gs:// reference, Cloud Storage's naming rules
// (cloud.google.com/storage/docs/buckets#naming and
// cloud.google.com/storage/docs/objects#naming).
const (
	// MinBucketLen and MaxBucketLen bound a bucket name. Cloud Storage
	// allows dotted names up to 222 characters; the relay takes the
	// undotted limit, which every bucket it is allowed to read meets.
	MinBucketLen = 3
	MaxBucketLen = 63
	// MaxObjectNameLen bounds an object name, in bytes of UTF-8.
	MaxObjectNameLen = 1024
)

// gcsExample is the fix every gcs_uri problem ends with.
const gcsExample = "expected gs://BUCKET/OBJECT, such as gs://gmail-relay-attachments/default/invoice-42.pdf"

// ParseGCSURI splits "gs://BUCKET/OBJECT" into its bucket and object name,
// checking both against Cloud Storage's naming rules. The object name is
// taken as it is, not percent-decoded, as gcloud storage writes it.
func ParseGCSURI(uri string) (bucket, object string, err error) {
	rest, ok := strings.CutPrefix(uri, "gs://")
	if !ok {
		return "", "", fmt.Errorf("%s is not a gs:// URI; %s", quote(uri), gcsExample)
	}
	bucket, object, ok = strings.Cut(rest, "/")
	if !ok || object == "" {
		return "", "", fmt.Errorf("%s names no object; %s", quote(uri), gcsExample)
	}
	if err := CheckBucketName(bucket); err != nil {
		return "", "", fmt.Errorf("%s: %w; %s", quote(uri), err, gcsExample)
	}
	switch {
	case !utf8.ValidString(object):
		return "", "", fmt.Errorf("%s: the object name is not valid UTF-8", quote(uri))
	case len(object) > MaxObjectNameLen:
		return "", "", fmt.Errorf("the object name is %d bytes long; Cloud Storage allows at most %d", len(object), MaxObjectNameLen)
	case strings.ContainsAny(object, "\r\n"):
		return "", "", fmt.Errorf("%s: the object name contains a line break, which Cloud Storage object names cannot", quote(uri))
	case object == "." || object == "..":
		return "", "", fmt.Errorf("%s: the object name cannot be . or .., as in Cloud Storage", quote(uri))
	}
	return bucket, object, nil
}

func checkGCSURI(uri string) error {
	_, _, err := ParseGCSURI(uri)
	return err
}

// CheckBucketName checks a bucket name: 3 to 63 lowercase letters, digits,
// dots, hyphens and underscores, starting and ending with a letter or digit.
func CheckBucketName(b string) error {
	if n := len(b); n < MinBucketLen || n > MaxBucketLen {
		return fmt.Errorf("the bucket name %s is %d characters long; bucket names have %d to %d", quote(b), n, MinBucketLen, MaxBucketLen)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || i == len(b)-1 || (c != '.' && c != '-' && c != '_')) {
			return fmt.Errorf("the bucket name %s is not a Cloud Storage bucket name: lowercase letters, digits, dots, hyphens and underscores, starting and ending with a letter or digit", quote(b))
		}
	}
	return nil
}

// errNotFilled refuses to compose a by-reference attachment whose metadata
// the sender has not filled in.
var errNotFilled = errors.New("is by reference and has no filename or content type yet: the sender fills them from the object (ObjectDefaults) before composing")

// DefaultContentType is a by-reference attachment's content type when
// neither the request nor the object gives a usable one.
const DefaultContentType = "application/octet-stream"

// ObjectDefaults returns the filename and content type of a by-reference
// attachment that the request left out, from the object: the filename of
// its Content-Disposition if it has one, else the last segment of its name;
// its Content-Type if the relay can send it as an attachment, else
// application/octet-stream. The filename is made fit for a header (control
// characters become "_", at most MaxFilenameLen characters), since object
// names and metadata are not held to the request's rules.
func ObjectDefaults(objectName, contentType, contentDisposition string) (filename, ctype string) {
	if _, params, err := mime.ParseMediaType(contentDisposition); err == nil {
		filename = params["filename"]
	}
	if strings.TrimSpace(filename) == "" {
		filename = objectName[strings.LastIndexByte(objectName, '/')+1:]
	}
	filename = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, strings.ToValidUTF8(filename, "_"))
	if r := []rune(filename); len(r) > MaxFilenameLen {
		filename = string(r[:MaxFilenameLen])
	}
	if strings.TrimSpace(filename) == "" {
		filename = "attachment"
	}
	ctype = DefaultContentType
	var p problems
	if contentType != "" && p.headerText("content_type", contentType, MaxContentTypeLen) {
		if p.attachmentType("content_type", contentType); len(p.list) == 0 {
			ctype = contentType
		}
	}
	return filename, ctype
}
