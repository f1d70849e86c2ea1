//! Language of an inquiry: `Content-Language`, else restricted text detection, else the default.
