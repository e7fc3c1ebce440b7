/**
 * A throwaway SSH key pair for tests, published on purpose (NixOS's tests have
 * the same: snakeOilPrivateKey). Never use it for anything else.
 */
export const snakeoil = {
  privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACAsYYSmZLyxM8YP1TVjzDDM69LUX9UKRgY0BXrrDXapOQAAAJjtodzm7aHc
5gAAAAtzc2gtZWQyNTUxOQAAACAsYYSmZLyxM8YP1TVjzDDM69LUX9UKRgY0BXrrDXapOQ
AAAEBXdydAmAK+fujN9+bXvQ8uj1R0FxEcf5aRWZ63gorBgyxhhKZkvLEzxg/VNWPMMMzr
0tRf1QpGBjQFeusNdqk5AAAAE3ZtcmlnLXRlc3Qtc25ha2VvaWwBAg==
-----END OPENSSH PRIVATE KEY-----
`,
  publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICxhhKZkvLEzxg/VNWPMMMzr0tRf1QpGBjQFeusNdqk5 vmrig-test-snakeoil",
};
