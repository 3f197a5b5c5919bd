module github.com/mailchimp-heap/mailchimp-heap/deploy/probe

go 1.26.0
