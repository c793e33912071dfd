// The link's token travels in the URL fragment, which browsers never send to the server
// (so it is in no access log). Move it into the form and out of the address bar and history.
(function () {
  var token = window.location.hash.replace(/^#/, "");
  if (token) {
    document.getElementById("link-token").value = token;
    history.replaceState(null, "", window.location.pathname);
  }
})();
