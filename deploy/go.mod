module github.com/mailchimp-heap/mailchimp-heap/deploy

go 1.26.0
