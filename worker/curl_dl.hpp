// libcurl, loaded on first use (worker/curl_dl.cpp).
#pragma once

namespace netsvr {

// Why libcurl could not be loaded; nullptr when it is loaded. Loads it if not tried yet.
const char* curlLoadError();

}  // namespace netsvr
