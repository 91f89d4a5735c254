//! A component of another world, for tests of `ward plugin check` and of
//! the daemon's refusal: it imports an interface Ward does not provide
//! (`test:alien/beacon`) and exports no `handle` of the job-plugin shape.

wit_bindgen::generate!({
    inline: r#"
        package test:alien;

        interface beacon {
            call-home: func() -> string;
        }

        world alien {
            import beacon;
            export run: func() -> string;
        }
    "#,
});

struct Alien;

impl Guest for Alien {
    fn run() -> String {
        test::alien::beacon::call_home()
    }
}

export!(Alien);
