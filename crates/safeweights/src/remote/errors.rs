//! From `object_store`'s errors to [`RemoteErrorKind`]s: the one place
//! that looks inside them.

use object_store::client::{HttpError, HttpErrorKind};

use crate::error::{Error, RemoteErrorKind};

/// The typed error for a failed request, retries already spent.
pub(crate) fn classify(error: object_store::Error) -> Error {
    let message = error.to_string();
    let kind = match &error {
        object_store::Error::NotFound { .. } => RemoteErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. } => RemoteErrorKind::PermissionDenied,
        object_store::Error::Unauthenticated { .. } => RemoteErrorKind::Unauthenticated,
        object_store::Error::Precondition { .. } => RemoteErrorKind::Changed,
        object_store::Error::UnknownConfigurationKey { .. }
        | object_store::Error::InvalidPath { .. } => RemoteErrorKind::Config,
        other => kind_of_generic(other, &message),
    };
    Error::Remote {
        kind,
        message: tidy(&message),
    }
}

/// A generic error's kind, from the HTTP error inside it, else from the
/// status the server sent. object_store keeps the status in a type it
/// does not export, so the status and S3's error codes are read from the
/// message here, and nowhere else.
fn kind_of_generic(error: &object_store::Error, message: &str) -> RemoteErrorKind {
    if message.contains("non-2xx status code: 5") {
        return RemoteErrorKind::Server;
    }
    if chain_mentions_timeout(error) {
        return RemoteErrorKind::TimedOut;
    }
    if let Some(http) = find_http_error(error) {
        return match http.kind() {
            HttpErrorKind::Timeout => RemoteErrorKind::TimedOut,
            HttpErrorKind::Connect
            | HttpErrorKind::Interrupted
            | HttpErrorKind::Request
            | HttpErrorKind::Decode => RemoteErrorKind::Connection,
            _ => RemoteErrorKind::Other,
        };
    }
    let has = |needle: &str| message.contains(needle);
    if has("PermanentRedirect")
        || has("AuthorizationHeaderMalformed")
        || has("IllegalLocationConstraint")
        || has("301 Moved Permanently")
    {
        RemoteErrorKind::WrongRegion
    } else if has("error sending request") || has("connection") {
        RemoteErrorKind::Connection
    } else {
        RemoteErrorKind::Other
    }
}

fn find_http_error<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e HttpError> {
    let mut current: Option<&'e (dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(http) = error.downcast_ref::<HttpError>() {
            return Some(http);
        }
        current = error.source();
    }
    None
}

/// reqwest reports an expired request timeout as a "request" error whose
/// innermost cause is the timeout; look for it down the chain.
fn chain_mentions_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        let io_timeout = error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        let text = error.to_string().to_ascii_lowercase();
        if io_timeout || text.contains("timed out") {
            return true;
        }
        current = error.source();
    }
    false
}

/// Whether a ranged GET was answered 416 Range Not Satisfiable: what an
/// empty object answers to any Range. Read from the status line only,
/// never from anywhere in the message: a 404's message holds the URL,
/// whose port may well contain "416".
pub(crate) fn is_range_not_satisfiable(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::Generic { .. })
        && error
            .to_string()
            .contains("non-2xx status code: 416 Range Not Satisfiable")
}

/// Whether a ranged GET was answered with the whole object (200 instead
/// of 206): the server does not support Range.
pub(crate) fn is_not_partial(error: &object_store::Error) -> bool {
    // The HTTP store says so with `NotSupported`; the S3 client with a
    // private `NotPartial` variant whose message is fixed.
    let message = error.to_string();
    matches!(error, object_store::Error::NotSupported { .. }) && message.contains("Range")
        || message.contains("Received non-partial response when range requested")
}

/// object_store's messages repeat themselves across wrapped errors; keep
/// them on one line.
fn tidy(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Box<dyn std::error::Error + Send + Sync> {
        text.into()
    }

    #[test]
    fn range_not_satisfiable_is_read_from_the_status_line() {
        let empty = object_store::Error::Generic {
            store: "S3",
            source: message(
                "Error performing GET http://127.0.0.1:9000/models/x: \
                 Server returned non-2xx status code: 416 Range Not Satisfiable: ",
            ),
        };
        assert!(is_range_not_satisfiable(&empty));
    }

    #[test]
    fn not_found_on_a_port_containing_416_is_not_range_not_satisfiable() {
        let missing = object_store::Error::NotFound {
            path: "models/nothing.safetensors".into(),
            source: message(
                "Error performing GET http://127.0.0.1:41623/models/nothing.safetensors: \
                 Server returned non-2xx status code: 404 Not Found: <RequestId>4160</RequestId>",
            ),
        };
        assert!(!is_range_not_satisfiable(&missing));
        let Error::Remote { kind, .. } = classify(missing) else {
            panic!("not a remote error");
        };
        assert_eq!(kind, RemoteErrorKind::NotFound);
    }
}
