module github.com/mailchimp-heap/mailchimp-heap/schemas

go 1.26.0
