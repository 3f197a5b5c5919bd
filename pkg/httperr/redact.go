package httperr

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxAnswerRunes bounds how much of an answer an error shows.
const maxAnswerRunes = 200

// addressLike matches what could be an email address: an @, or its
// percent-, JSON- or HTML-escaped form, between runs of characters that are
// not delimiters (of JSON, prose or a query string). It asks for no domain
// shape: a cut or odd address is still one.
var addressLike = regexp.MustCompile(`[^\s"'<>()\[\]{},;:@\\=&?/]+(?:@|%40|\\[uU]0040|&#0*64;)[^\s"'<>()\[\]{},;:@\\=&?/]+`)

// RedactAddresses replaces anything address-like in s with [address]: for
// texts that may quote a caller's or Heap's data and go to a log.
func RedactAddresses(s string) string {
	if !strings.ContainsAny(s, "@%\\&") {
		return s
	}
	return addressLike.ReplaceAllString(s, "[address]")
}

// oneLine is text as an error may show it: on one line, valid UTF-8, at
// most 200 characters.
func oneLine(text string) string {
	s := strings.ToValidUTF8(text, "\uFFFD")
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	if utf8.RuneCountInString(s) <= maxAnswerRunes {
		return s
	}
	return string([]rune(s)[:maxAnswerRunes]) + "…"
}
